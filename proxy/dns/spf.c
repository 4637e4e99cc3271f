/*
 * spf.c: RFC 7208 check_host() (see spf.h): record selection and parsing, macro expansion, the
 * mechanisms all/include/a/mx/ip4/ip6/exists (ptr is parsed and counted but never matches, as
 * §5.5 discourages it), redirect, qualifiers, the 10-lookup and 2-void-lookup limits. Loops end
 * at the lookup limit as permerror. Pure: every DNS answer comes from the caller's resolver.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spf.h"

#define SPF_MAX_DEPTH 11
#define SPF_MX_MAX 10

struct spf_eval {
    const struct spf_resolver *r;
    const struct spf_request *q;
    struct spf_outcome *out;
    enum spf_result error; /* set when a step returns -1 */
};

const char *
spf_result_name(enum spf_result r)
{
    switch (r) {
    case SPF_NONE:
        return "none";
    case SPF_NEUTRAL:
        return "neutral";
    case SPF_PASS:
        return "pass";
    case SPF_FAIL:
        return "fail";
    case SPF_SOFTFAIL:
        return "softfail";
    case SPF_TEMPERROR:
        return "temperror";
    case SPF_PERMERROR:
        return "permerror";
    case SPF_PENDING:
        return "pending";
    }
    return "?";
}

/* --- parsing --- */

/* A macro-string (RFC 7208 §7.1): literals %x21-7E, '%' escapes and %{letter digits r delims}. */
static bool
macro_valid(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x21 || c > 0x7e)
            return false;
        if (c != '%')
            continue;
        if (++i >= n)
            return false;
        if (p[i] == '%' || p[i] == '_' || p[i] == '-')
            continue;
        if (p[i] != '{' || ++i >= n || strchr("slodiphcrtvSLODIPHCRTV", p[i]) == NULL)
            return false;
        for (i++; i < n && isdigit((unsigned char)p[i]); i++)
            ;
        if (i < n && (p[i] == 'r' || p[i] == 'R'))
            i++;
        for (; i < n && strchr(".-+,/_=", p[i]) != NULL; i++)
            ;
        if (i >= n || p[i] != '}')
            return false;
    }
    return true;
}

static int
parse_cidr(const char *p, size_t n, int max)
{
    if (n == 0 || n > 3)
        return -2;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -2;
        v = v * 10 + (p[i] - '0');
    }
    if ((n > 1 && p[0] == '0') || v > max)
        return -2;
    return v;
}

/* Strip "/N", "//M" or "/N//M" off the end of t->arg. Returns -1 on a bad length. */
static int
parse_dual_cidr(struct spf_term *t)
{
    const char *p = t->arg;
    size_t n = t->arg_len;
    for (size_t i = n; i-- > 0;) {
        if (p[i] != '/')
            continue;
        if (i > 0 && p[i - 1] == '/') {
            if (t->cidr6 != -1 || (t->cidr6 = parse_cidr(p + i + 1, n - i - 1, 128)) < 0)
                return -1;
            n = --i;
            continue;
        }
        if ((t->cidr4 = parse_cidr(p + i + 1, n - i - 1, 32)) < 0)
            return -1;
        n = i;
        break;
    }
    t->arg_len = n;
    if (n == 0)
        t->arg = NULL;
    return 0;
}

static int
parse_ip(struct spf_term *t, int family)
{
    char text[64];
    const char *slash = t->arg ? memchr(t->arg, '/', t->arg_len) : NULL;
    size_t alen = slash ? (size_t)(slash - t->arg) : t->arg_len;
    if (t->arg == NULL || alen == 0 || alen >= sizeof(text))
        return -1;
    memcpy(text, t->arg, alen);
    text[alen] = '\0';
    if (dns_addr_parse(text, &t->ip) != 0 || t->ip.family != family)
        return -1;
    int max = family == AF_INET ? 32 : 128;
    int bits = slash ? parse_cidr(slash + 1, t->arg_len - alen - 1, max) : max;
    if (bits < 0)
        return -1;
    if (family == AF_INET)
        t->cidr4 = bits;
    else
        t->cidr6 = bits;
    return 0;
}

static const struct {
    const char *name;
    enum spf_mech mech;
    int arg; /* 0 none, 1 optional domain, 2 required domain, 3 address */
} mechs[] = {
    {"all", SPF_M_ALL, 0}, {"include", SPF_M_INCLUDE, 2}, {"a", SPF_M_A, 1},
    {"mx", SPF_M_MX, 1},   {"ptr", SPF_M_PTR, 1},         {"ip4", SPF_M_IP4, 3},
    {"ip6", SPF_M_IP6, 3}, {"exists", SPF_M_EXISTS, 2},
};

static int
parse_directive(const char *p, size_t n, struct spf_term *t, const char **err_out)
{
    memset(t, 0, sizeof(*t));
    t->text = p;
    t->text_len = n;
    t->qualifier = '+';
    t->cidr4 = t->cidr6 = -1;
    if (n > 0 && strchr("+-~?", p[0]) != NULL) {
        t->qualifier = p[0];
        p++, n--;
    }
    size_t k = 0;
    while (k < n && p[k] != ':' && p[k] != '/')
        k++;
    size_t m = 0;
    while (m < ARRAY_SIZE(mechs) &&
           (strlen(mechs[m].name) != k || strncasecmp(mechs[m].name, p, k) != 0))
        m++;
    *err_out = "unknown mechanism";
    if (m == ARRAY_SIZE(mechs))
        return -1;
    t->mech = mechs[m].mech;
    bool colon = k < n && p[k] == ':';
    t->arg = colon ? p + k + 1 : (k < n ? p + k : NULL);
    t->arg_len = colon ? n - k - 1 : n - k;
    *err_out = "bad mechanism argument";
    switch (mechs[m].arg) {
    case 0:
        return k == n ? 0 : -1;
    case 3:
        return colon ? parse_ip(t, t->mech == SPF_M_IP4 ? AF_INET : AF_INET6) : -1;
    case 1:
    case 2:
        break;
    }
    if (t->mech == SPF_M_A || t->mech == SPF_M_MX) {
        if (!colon && t->arg != NULL && t->arg[0] != '/')
            return -1;
        if (parse_dual_cidr(t) != 0 || (colon && t->arg == NULL))
            return -1;
    } else if (!colon && t->arg != NULL) {
        return -1;
    }
    if (mechs[m].arg == 2 && (t->arg == NULL || t->arg_len == 0))
        return -1;
    if (t->arg != NULL && (t->arg_len == 0 || !macro_valid(t->arg, t->arg_len)))
        return -1;
    return 0;
}

/* "name=value" with name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ). */
static bool
is_modifier(const char *p, size_t n, size_t *eq_out)
{
    if (n == 0 || !isalpha((unsigned char)p[0]))
        return false;
    for (size_t i = 1; i < n; i++) {
        if (p[i] == '=') {
            *eq_out = i;
            return true;
        }
        if (!isalnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '_' && p[i] != '.')
            return false;
    }
    return false;
}

static int
parse_term(const char *p, size_t n, struct spf_record *out, bool *exp_seen, const char **err_out)
{
    size_t eq;
    if (is_modifier(p, n, &eq)) {
        const char *v = p + eq + 1;
        size_t vlen = n - eq - 1;
        *err_out = "bad modifier value";
        if (!macro_valid(v, vlen))
            return -1;
        if (eq == 8 && strncasecmp(p, "redirect", 8) == 0) {
            *err_out = "duplicate or empty redirect";
            if (out->redirect != NULL || vlen == 0)
                return -1;
            out->redirect = v;
            out->redirect_len = vlen;
        } else if (eq == 3 && strncasecmp(p, "exp", 3) == 0) {
            *err_out = "duplicate exp";
            if (*exp_seen)
                return -1;
            *exp_seen = true;
        }
        return 0;
    }
    *err_out = "too many terms";
    if (out->n >= SPF_MAX_TERMS)
        return -1;
    if (parse_directive(p, n, &out->terms[out->n], err_out) != 0)
        return -1;
    out->n++;
    return 0;
}

int
spf_record_parse(const char *rec, size_t n, struct spf_record *out, const char **err_out)
{
    memset(out, 0, sizeof(*out));
    bool exp_seen = false;
    *err_out = "not an SPF record";
    if (n < 6 || strncasecmp(rec, "v=spf1", 6) != 0 || (n > 6 && rec[6] != ' '))
        return -1;
    for (size_t i = 6; i < n;) {
        while (i < n && rec[i] == ' ')
            i++;
        size_t start = i;
        while (i < n && rec[i] != ' ')
            i++;
        if (i > start && parse_term(rec + start, i - start, out, &exp_seen, err_out) != 0)
            return -1;
    }
    return 0;
}

/* --- macro expansion --- */

static size_t
macro_value(const struct spf_eval *ev, const char *domain, char letter, char *out, size_t cap)
{
    const struct spf_request *q = ev->q;
    const char *at = strrchr(q->sender, '@');
    switch (tolower((unsigned char)letter)) {
    case 's':
        return (size_t)snprintf(out, cap, "%s", q->sender);
    case 'l':
        return (size_t)snprintf(out, cap, "%.*s", at ? (int)(at - q->sender) : 10,
                                at ? q->sender : "postmaster");
    case 'o':
        return (size_t)snprintf(out, cap, "%s", at ? at + 1 : q->domain);
    case 'd':
        return (size_t)snprintf(out, cap, "%s", domain);
    case 'h':
        return (size_t)snprintf(out, cap, "%s", q->helo ? q->helo : "unknown");
    case 'v':
        return (size_t)snprintf(out, cap, "%s", q->ip.family == AF_INET ? "in-addr" : "ip6");
    case 'i':
    case 'c':
        if (q->ip.family == AF_INET)
            return (size_t)snprintf(out, cap, "%u.%u.%u.%u", q->ip.b[0], q->ip.b[1], q->ip.b[2],
                                    q->ip.b[3]);
        else {
            size_t k = 0;
            for (int i = 0; i < 16 && k + 4 < cap; i++)
                k += (size_t)snprintf(out + k, cap - k, "%x.%x%s", q->ip.b[i] >> 4, q->ip.b[i] & 15,
                                      i < 15 ? "." : "");
            return k;
        }
    case 't':
        return (size_t)snprintf(out, cap, "0");
    }
    return (size_t)snprintf(out, cap, "unknown"); /* p, r */
}

/* Apply "digits r delimiters" to value: split, maybe reverse, keep the rightmost parts. */
static size_t
macro_transform(char *value, size_t vlen, unsigned keep, bool reverse, const char *delims,
                char *out, size_t cap)
{
    const char *parts[128];
    size_t lens[128], np = 0, start = 0;
    for (size_t i = 0; i <= vlen && np < ARRAY_SIZE(parts); i++) {
        if (i < vlen && strchr(delims, value[i]) == NULL)
            continue;
        parts[np] = value + start;
        lens[np++] = i - start;
        start = i + 1;
    }
    size_t first = keep > 0 && keep < np ? np - keep : 0, k = 0;
    for (size_t j = first; j < np; j++) {
        size_t idx = reverse ? np - 1 - j : j;
        if (k > 0 && k < cap)
            out[k++] = '.';
        size_t c = MOAT_MIN(lens[idx], cap - k);
        memcpy(out + k, parts[idx], c);
        k += c;
    }
    return k;
}

/* Expand a domain-spec into out (NUL-terminated), cut from the left to 253 characters.
 * Returns -1 (permerror) if it does not make a valid domain. */
static int
expand(const struct spf_eval *ev, const char *domain, const char *p, size_t n, char *out,
       size_t cap)
{
    char big[2048], val[512], tr[600];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof(big); i++) {
        if (p[i] != '%') {
            big[k++] = p[i];
            continue;
        }
        char c = p[++i];
        if (c != '{') {
            big[k++] = c == '%' ? '%' : c == '_' ? ' ' : '-';
            continue;
        }
        char letter = p[++i];
        unsigned keep = 0;
        for (i++; isdigit((unsigned char)p[i]); i++)
            keep = MOAT_MIN(keep * 10 + (unsigned)(p[i] - '0'), 1000u);
        bool rev = p[i] == 'r' || p[i] == 'R';
        i += rev;
        char delims[8] = "";
        size_t nd = 0;
        for (; p[i] != '}' && nd + 1 < sizeof(delims); i++)
            delims[nd++] = p[i];
        delims[nd] = '\0';
        size_t vlen = MOAT_MIN(macro_value(ev, domain, letter, val, sizeof(val)), sizeof(val) - 1);
        size_t tlen = macro_transform(val, vlen, keep, rev, nd ? delims : ".", tr, sizeof(tr));
        size_t m = MOAT_MIN(tlen, sizeof(big) - 1 - k);
        memcpy(big + k, tr, m);
        k += m;
    }
    big[k] = '\0';
    const char *start = big;
    while (strlen(start) > DNSNAME_MAX) { /* §7.3: drop labels from the left */
        const char *dot = strchr(start, '.');
        if (dot == NULL)
            return -1;
        start = dot + 1;
    }
    if (!dnsname_domain_valid(start, strlen(start)) || strlen(start) >= cap)
        return -1;
    snprintf(out, cap, "%s", start);
    return 0;
}

/* --- evaluation --- */

static enum spf_result check_host(struct spf_eval *ev, const char *domain, unsigned depth);

static int
fail(struct spf_eval *ev, enum spf_result r, const char *why)
{
    ev->error = r;
    if (ev->out->why[0] == '\0' || r == SPF_PENDING)
        snprintf(ev->out->why, sizeof(ev->out->why), "%s", why);
    return -1;
}

static int
count_lookup(struct spf_eval *ev)
{
    if (++ev->out->lookups > SPF_LOOKUP_LIMIT)
        return fail(ev, SPF_PERMERROR, "too many DNS lookups");
    return 0;
}

/* Ask the resolver. Returns 1 with records, 0 for none (a void lookup if counted), -1. */
static int
resolve(struct spf_eval *ev, enum spf_qtype t, const char *name, struct spf_rrset *rr,
        bool void_counts)
{
    memset(rr, 0, sizeof(*rr));
    switch (ev->r->lookup(ev->r->arg, t, name, rr)) {
    case SPF_R_OK:
        if (rr->n > 0)
            return 1;
        break;
    case SPF_R_NONE:
        break;
    case SPF_R_TEMP:
        return fail(ev, SPF_TEMPERROR, "DNS lookup failed temporarily");
    case SPF_R_PENDING:
        ev->out->need_type = t;
        snprintf(ev->out->need_name, sizeof(ev->out->need_name), "%s", name);
        return fail(ev, SPF_PENDING, "pending");
    }
    if (void_counts && ++ev->out->void_lookups > SPF_VOID_LIMIT)
        return fail(ev, SPF_PERMERROR, "too many void DNS lookups");
    return 0;
}

static bool
addr_match(const struct spf_eval *ev, const struct spf_term *t, const struct dns_addr *a)
{
    const struct dns_addr *ip = &ev->q->ip;
    int bits = ip->family == AF_INET ? t->cidr4 : t->cidr6;
    if (bits < 0)
        bits = ip->family == AF_INET ? 32 : 128;
    return dns_addr_prefix_match(ip, a, (unsigned)bits);
}

/* Any A/AAAA record of name (in the client's family) inside the term's prefix. */
static int
match_host(struct spf_eval *ev, const struct spf_term *t, const char *name, bool void_counts)
{
    struct spf_rrset rr;
    enum spf_qtype qt = ev->q->ip.family == AF_INET ? SPF_Q_A : SPF_Q_AAAA;
    int r = resolve(ev, qt, name, &rr, void_counts);
    for (size_t i = 0; r == 1 && i < rr.n; i++)
        if (addr_match(ev, t, &rr.addrs[i]))
            return 1;
    return r < 0 ? -1 : 0;
}

static int
match_mx(struct spf_eval *ev, const struct spf_term *t, const char *name)
{
    struct spf_rrset rr;
    int r = resolve(ev, SPF_Q_MX, name, &rr, true);
    if (r <= 0)
        return r;
    if (rr.n > SPF_MX_MAX)
        return fail(ev, SPF_PERMERROR, "too many MX records");
    /* copy the names: the next lookups may move the resolver's storage */
    char names[SPF_MX_MAX][DNSNAME_MAX + 2];
    size_t n = rr.n;
    for (size_t i = 0; i < n; i++)
        snprintf(names[i], sizeof(names[i]), "%s", rr.strs[i]);
    for (size_t i = 0; i < n; i++) {
        if (!dnsname_domain_valid(names[i], strlen(names[i])))
            continue; /* the null MX "." and junk */
        r = match_host(ev, t, names[i], false);
        if (r != 0)
            return r;
    }
    return 0;
}

static int
match_include(struct spf_eval *ev, const char *target, unsigned depth)
{
    switch (check_host(ev, target, depth + 1)) {
    case SPF_PASS:
        return 1;
    case SPF_FAIL:
    case SPF_SOFTFAIL:
    case SPF_NEUTRAL:
        return 0;
    case SPF_TEMPERROR:
        return fail(ev, SPF_TEMPERROR, "include: temporary error");
    case SPF_PENDING:
        return fail(ev, SPF_PENDING, "pending");
    case SPF_NONE:
    case SPF_PERMERROR:
        break;
    }
    return fail(ev, SPF_PERMERROR, "include: no valid SPF record");
}

static int
match_term(struct spf_eval *ev, const struct spf_term *t, const char *domain, unsigned depth)
{
    char target[DNSNAME_MAX + 2];
    bool counts = t->mech != SPF_M_ALL && t->mech != SPF_M_IP4 && t->mech != SPF_M_IP6;
    if (counts && count_lookup(ev) != 0)
        return -1;
    if (t->arg != NULL && counts &&
        expand(ev, domain, t->arg, t->arg_len, target, sizeof(target)) != 0)
        return fail(ev, SPF_PERMERROR, "bad domain-spec");
    if (t->arg == NULL)
        snprintf(target, sizeof(target), "%s", domain);
    switch (t->mech) {
    case SPF_M_ALL:
        return 1;
    case SPF_M_IP4:
    case SPF_M_IP6:
        return ev->q->ip.family == t->ip.family && addr_match(ev, t, &t->ip);
    case SPF_M_A:
        return match_host(ev, t, target, true);
    case SPF_M_MX:
        return match_mx(ev, t, target);
    case SPF_M_PTR:
        return 0;
    case SPF_M_EXISTS: {
        struct spf_rrset rr;
        return resolve(ev, SPF_Q_A, target, &rr, true);
    }
    case SPF_M_INCLUDE:
        return match_include(ev, target, depth);
    }
    return 0;
}

static enum spf_result
qualifier_result(char q)
{
    switch (q) {
    case '-':
        return SPF_FAIL;
    case '~':
        return SPF_SOFTFAIL;
    case '?':
        return SPF_NEUTRAL;
    }
    return SPF_PASS;
}

/* The one SPF record of domain: 1 found (copied to rec_out), 0 none, -1. */
static int
find_record(struct spf_eval *ev, const char *domain, char *rec_out, size_t cap)
{
    struct spf_rrset rr;
    int r = resolve(ev, SPF_Q_TXT, domain, &rr, false);
    if (r <= 0)
        return r;
    int found = 0;
    for (size_t i = 0; i < rr.n; i++) {
        const char *s = rr.strs[i];
        if (strncasecmp(s, "v=spf1", 6) != 0 || (s[6] != '\0' && s[6] != ' '))
            continue;
        if (found++ > 0)
            return fail(ev, SPF_PERMERROR, "more than one SPF record");
        if (strlen(s) >= cap)
            return fail(ev, SPF_PERMERROR, "SPF record too long");
        snprintf(rec_out, cap, "%s", s);
    }
    return found;
}

static enum spf_result
check_host(struct spf_eval *ev, const char *domain, unsigned depth)
{
    char rec[4096];
    struct spf_record *parsed = xcalloc(1, sizeof(*parsed));
    enum spf_result res = SPF_NEUTRAL;
    const char *err;
    int r = depth > SPF_MAX_DEPTH ? fail(ev, SPF_PERMERROR, "include/redirect loop") : 0;
    if (r == 0 && !dnsname_domain_valid(domain, strlen(domain))) {
        res = SPF_NONE;
        goto done;
    }
    if (r == 0)
        r = find_record(ev, domain, rec, sizeof(rec));
    if (r == 0) {
        res = SPF_NONE;
        goto done;
    }
    if (r > 0 && spf_record_parse(rec, strlen(rec), parsed, &err) != 0)
        r = fail(ev, SPF_PERMERROR, err);
    for (size_t i = 0; r > 0 && i < parsed->n; i++) {
        int m = match_term(ev, &parsed->terms[i], domain, depth);
        if (m < 0) {
            r = -1;
        } else if (m > 0) {
            res = qualifier_result(parsed->terms[i].qualifier);
            if (depth == 0)
                snprintf(ev->out->why, sizeof(ev->out->why), "matched %.*s",
                         (int)MOAT_MIN(parsed->terms[i].text_len, 80), parsed->terms[i].text);
            goto done;
        }
    }
    if (r > 0 && parsed->redirect != NULL) {
        char target[DNSNAME_MAX + 2];
        if (count_lookup(ev) != 0)
            r = -1;
        else if (expand(ev, domain, parsed->redirect, parsed->redirect_len, target,
                        sizeof(target)) != 0)
            r = fail(ev, SPF_PERMERROR, "bad redirect domain");
        else
            res = check_host(ev, target, depth + 1);
        if (r > 0 && res == SPF_NONE)
            r = fail(ev, SPF_PERMERROR, "redirect: no SPF record");
        if (r > 0 && (res == SPF_PERMERROR || res == SPF_TEMPERROR || res == SPF_PENDING))
            r = -1, ev->error = res;
    }
    if (r < 0)
        res = ev->error;
done:
    free(parsed);
    return res;
}

enum spf_result
spf_check(const struct spf_resolver *r, const struct spf_request *q, struct spf_outcome *out)
{
    memset(out, 0, sizeof(*out));
    struct spf_eval ev = {.r = r, .q = q, .out = out, .error = SPF_PERMERROR};
    out->result = check_host(&ev, q->domain, 0);
    if (out->why[0] == '\0')
        snprintf(out->why, sizeof(out->why), "%s",
                 out->result == SPF_NONE ? "no SPF record" : "default");
    return out->result;
}
