/*
 * uribl.c: URI block lists (SURBL/URIBL style) on the content of messages to an MX listener.
 * The host names uriscan.c finds while the message streams to the backend are reduced to their
 * registered domain with libpsl (the only file that uses it) and looked up at once in every
 * [dns] uribl list on the worker's resolver (dns.c caches the answers); an IPv4 literal goes
 * reversed to the uribl_ip_zones lists only. At the end of data the protocol asks for the
 * verdict. Per message at most uribl_max_lookups queries. It never holds a message itself:
 * whether the final dot goes to the backend is the protocol's move.
 */
#include <arpa/inet.h>
#include <libpsl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnscheck_int.h"
#include "log.h"
#include "uriscan.h"

/* Name bytes kept per domain on average (a message's domains share one pool). */
#define URIBL_DOMAIN_BYTES 48

struct uribl {
    struct dnscheck *d;
    const struct dnsbl_list *lists;
    uint32_t ip_zones; /* the lists that take IPv4 literals (one bit per list) */
    struct uriscan scan;
    bool active;   /* a message is being scanned */
    bool finished; /* its end was seen */
    bool notify;   /* the protocol waits for on_dns_done */
    size_t max_domains;
    const char **domains; /* into pool */
    size_t ndomains;
    char *pool; /* the domains' names, NUL-terminated one after the other */
    size_t pool_len, pool_cap;
    struct check_waiter *waiters; /* domain * lists->n + zone */
    unsigned pending, skipped;
    uint32_t listed_zones; /* one bit per list */
    const char *zone_domain[DNSBL_MAX_ZONES];
    struct dnsbl_score score;
    char reply[320];
};

static struct uribl *
uribl_of(struct session *s)
{
    return s->dns != NULL ? s->dns->uribl : NULL;
}

struct uribl *
uribl_new(struct dnscheck *d)
{
    const struct config_dns *cd = d->cd;
    if (cd->uribl_list == NULL || cd->uribl_policy == DNS_POLICY_OFF ||
        d->s->listener->proto != LPROTO_SMTP)
        return NULL;
    struct uribl *u = xcalloc(1, sizeof(*u));
    u->d = d;
    u->lists = cd->uribl_list;
    u->ip_zones = cd->uribl_ip_mask;
    u->max_domains = MOAT_MAX((size_t)1, cd->uribl_max_lookups / u->lists->n);
    u->domains = xcalloc(u->max_domains, sizeof(*u->domains));
    u->pool_cap = u->max_domains * URIBL_DOMAIN_BYTES; /* room for long names if most are short */
    u->pool = xcalloc(1, u->pool_cap);
    u->waiters = xcalloc(u->max_domains * u->lists->n, sizeof(*u->waiters));
    return u;
}

/* The protocol waits (or stops waiting) for on_dns_done with the client's answer held: the
 * session must not close on a half-closed client meanwhile. */
static void
uribl_notify(struct uribl *u, bool on)
{
    u->notify = on;
    u->d->s->dns_owes_client = on;
}

void
uribl_cancel(struct uribl *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < u->ndomains * u->lists->n; i++)
        dns_cancel(&u->waiters[i].w);
    u->pending = 0;
    uribl_notify(u, false);
}

void
uribl_free(struct uribl *u)
{
    if (u == NULL)
        return;
    uribl_cancel(u);
    free(u->waiters);
    free(u->domains);
    free(u->pool);
    free(u);
}

static void
on_answer(struct dns_waiter *w, const struct dns_answer *a)
{
    struct dnscheck *d = dc_of(w);
    struct uribl *u = d->uribl;
    unsigned index = container_of(w, struct check_waiter, w)->index;
    size_t zi = index % u->lists->n, di = index / u->lists->n;
    const struct dnsbl_zone *z = &u->lists->zones[zi];
    enum dnsbl_answer ans = dc_list_answer(z, a);
    if (ans != DNSBL_LISTED) {
        dnsbl_score_add(&u->score, z, ans);
    } else if ((u->listed_zones & (1u << zi)) == 0) { /* a list counts once per message */
        u->listed_zones |= 1u << zi;
        u->zone_domain[zi] = u->domains[di];
        dnsbl_score_add(&u->score, z, ans);
    }
    if (--u->pending > 0 || !u->notify)
        return;
    uribl_notify(u, false);
    struct session *s = d->s;
    if (!s->closing && s->proto->on_dns_done != NULL)
        s->proto->on_dns_done(s);
}

/* The registered domain of host (lower case), or NULL when it has none (a public suffix). */
static const char *
registered_domain(const char *host)
{
    const psl_ctx_t *psl = psl_builtin();
    if (psl != NULL)
        return psl_registrable_domain(psl, host);
    const char *last = strrchr(host, '.'); /* no list compiled in: the last two labels */
    const char *p = last;
    while (p != NULL && p > host && p[-1] != '.')
        p--;
    return last == NULL ? NULL : p;
}

/* The query for what a message links to in list zi: <domain>.<zone>, or for an address literal
 * the reversed address, <d>.<c>.<b>.<a>.<zone>, in the lists that take addresses. Returns the
 * query's length, or 0 when there is none to ask. */
static size_t
uribl_query(const struct uribl *u, const char *dom, const struct dns_addr *ip, size_t zi, char *q,
            size_t size)
{
    const char *zone = u->lists->zones[zi].name;
    int len;
    if (ip != NULL)
        len = (u->ip_zones & (1u << zi)) != 0 ? dnsname_reverse(ip, zone, q, size) : -1;
    else
        len = snprintf(q, size, "%s.%s", dom, zone);
    return len < 0 || (size_t)len > DNSNAME_MAX ? 0 : (size_t)len; /* too long: not listed */
}

static void
on_host(void *arg, const char *host, size_t n)
{
    struct uribl *u = arg;
    char h[URISCAN_HOST_MAX + 1];
    memcpy(h, host, n);
    h[n] = '\0';
    struct dns_addr ip = {.family = AF_INET};
    bool literal = inet_pton(AF_INET, h, ip.b) == 1;
    if (literal && u->ip_zones == 0)
        return; /* no list takes addresses */
    const char *dom = literal ? h : registered_domain(h);
    size_t dlen = dom != NULL ? strlen(dom) : 0;
    if (dlen == 0 || dlen > DNSNAME_MAX || !dnsname_host_valid(dom, dlen))
        return;
    for (size_t i = 0; i < u->ndomains; i++)
        if (strcmp(u->domains[i], dom) == 0)
            return;
    if (u->ndomains >= u->max_domains || u->pool_cap - u->pool_len < dlen + 1) {
        u->skipped++;
        return;
    }
    size_t di = u->ndomains++;
    u->domains[di] = memcpy(u->pool + u->pool_len, dom, dlen + 1);
    u->pool_len += dlen + 1;
    for (size_t zi = 0; zi < u->lists->n; zi++) {
        char q[DNSNAME_MAX + 2];
        struct check_waiter *cw = &u->waiters[di * u->lists->n + zi];
        dc_waiter_init(cw, u->d, (unsigned)(di * u->lists->n + zi));
        if (uribl_query(u, dom, literal ? &ip : NULL, zi, q, sizeof(q)) == 0)
            continue;
        u->pending++;
        dns_lookup(u->d->r, DNS_T_A, q, &cw->w, on_answer);
    }
}

void
session_uribl_start(struct session *s)
{
    struct uribl *u = uribl_of(s);
    if (u == NULL)
        return;
    uribl_cancel(u);
    const struct dnscheck *d = s->dns;
    /* an allowlisted client's content is not looked at, like its other checks */
    u->active = !(d->lists != NULL && d->bl_pending == 0 && d->bl_verdict == DNSBL_ALLOWLIST);
    u->finished = false;
    u->ndomains = 0;
    u->pool_len = 0;
    u->skipped = 0;
    u->listed_zones = 0;
    memset(u->zone_domain, 0, sizeof(u->zone_domain));
    dnsbl_score_init(&u->score);
    const struct config_dns *cd = d->cd;
    struct uriscan_limits lim = {cd->uribl_max_bytes, cd->uribl_max_parts, cd->uribl_max_depth};
    uriscan_init(&u->scan, &lim, on_host, u);
}

void
session_uribl_feed(struct session *s, const char *p, size_t n)
{
    struct uribl *u = uribl_of(s);
    if (u != NULL && u->active && !u->finished)
        uriscan_feed(&u->scan, p, n);
}

/* The list with the highest weight that listed a domain of this message, and that domain. */
static size_t
top_zone(const struct uribl *u)
{
    size_t top = 0;
    for (size_t i = 0; i < u->lists->n; i++)
        if ((u->listed_zones & (1u << i)) != 0 &&
            ((u->listed_zones & (1u << top)) == 0 ||
             u->lists->zones[i].weight > u->lists->zones[top].weight))
            top = i;
    return top;
}

static void
verdict_log(struct session *s, const struct uribl *u, unsigned timed_out)
{
    if (u->ndomains == 0 && u->scan.capped == URISCAN_CAP_NONE && u->skipped == 0)
        return;
    struct log_line l;
    log_begin(&l, timed_out > 0 ? LOG_WARN : LOG_INFO, EV_URIBL);
    if (l.skip)
        return;
    log_kv(&l, "sid", "%s", s->sid);
    log_kv(&l, "domains", "%zu", u->ndomains);
    log_kv(&l, "skipped", "%u", u->skipped);
    log_kv(&l, "score", "%d", u->score.score);
    if (u->listed_zones != 0) {
        size_t t = top_zone(u);
        log_kv(&l, "zone", "%s", u->lists->zones[t].name);
        log_kv_str(&l, "domain", u->zone_domain[t], strlen(u->zone_domain[t]));
    }
    log_kv(&l, "capped", "%s", uriscan_cap_name(u->scan.capped));
    log_kv(&l, "tempfail", "%u", u->score.tempfail);
    log_kv(&l, "timeout", "%u", timed_out);
    log_end(&l);
}

enum dns_verdict
session_uribl_verdict(struct session *s, bool give_up, const char **reply_out)
{
    struct uribl *u = uribl_of(s);
    *reply_out = NULL;
    if (u == NULL || !u->active)
        return DNS_VERDICT_PASS;
    if (!u->finished) {
        uriscan_finish(&u->scan);
        u->finished = true;
    }
    if (u->pending > 0 && !give_up) {
        uribl_notify(u, true);
        return DNS_VERDICT_PENDING;
    }
    unsigned timed_out = u->pending; /* counted as not listed */
    uribl_cancel(u);
    u->active = false;
    verdict_log(s, u, timed_out);
    const struct config_dns *cd = s->dns->cd;
    if (u->listed_zones == 0 || u->score.score < (int)cd->uribl_threshold)
        return DNS_VERDICT_PASS;
    size_t t = top_zone(u);
    const char *zone = u->lists->zones[t].name, *dom = u->zone_domain[t];
    bool enforce = s->dns->enforce && cd->uribl_policy == DNS_POLICY_REJECT;
    if (!enforce) {
        session_log(s, LOG_WARN,
                    cd->uribl_policy == DNS_POLICY_WARN ? EV_DNS_WARN : EV_DNS_WOULD_REFUSE,
                    "check=uribl zone=%s domain=%s", zone, dom);
        return DNS_VERDICT_PASS;
    }
    session_log(s, LOG_INFO, EV_URIBL_REFUSED, "zone=%s domain=%s score=%d", zone, dom,
                u->score.score);
    snprintf(u->reply, sizeof(u->reply),
             "554 5.7.1 Message content rejected: it links to %s, listed by %s", dom, zone);
    *reply_out = u->reply;
    return DNS_VERDICT_REFUSE;
}
