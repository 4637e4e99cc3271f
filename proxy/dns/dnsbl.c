/*
 * dnsbl.c: DNS list specifications, answer classification and scoring (see dnsbl.h). Pure. An
 * answer in 127.255.255.0/24 (Spamhaus: "query refused", "open resolver") or outside 127/8 is a
 * list error, never a listing: a resolver the list refuses must not block every client.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "dnsbl.h"
#include "dnsname.h"

static const char *
parse_octet(const char *p, unsigned *out)
{
    if (*p < '0' || *p > '9')
        return NULL;
    unsigned v = 0;
    for (int i = 0; *p >= '0' && *p <= '9'; i++, p++) {
        v = v * 10 + (unsigned)(*p - '0');
        if (i >= 3 || v > 255)
            return NULL;
    }
    *out = v;
    return p;
}

static int
add_range(struct dnsbl_zone *z, uint32_t base, unsigned lo, unsigned hi)
{
    if (z->nranges >= DNSBL_MAX_RANGES || lo > hi)
        return -1;
    z->ranges[z->nranges].lo = base | lo;
    z->ranges[z->nranges].hi = base | hi;
    z->nranges++;
    return 0;
}

/* "N" or "N..M" */
static const char *
parse_last(const char *p, unsigned *lo, unsigned *hi)
{
    p = parse_octet(p, lo);
    if (p == NULL)
        return NULL;
    *hi = *lo;
    if (p[0] == '.' && p[1] == '.')
        p = parse_octet(p + 2, hi);
    return p;
}

/* One "a.b.c.d", "a.b.c.d..N" or "a.b.c.[N;M..K]". */
static const char *
parse_range(const char *p, struct dnsbl_zone *z)
{
    unsigned o[3], lo, hi;
    for (int i = 0; i < 3; i++) {
        p = parse_octet(p, &o[i]);
        if (p == NULL || *p != '.')
            return NULL;
        p++;
    }
    uint32_t base = (uint32_t)o[0] << 24 | (uint32_t)o[1] << 16 | (uint32_t)o[2] << 8;
    if (*p != '[') {
        p = parse_last(p, &lo, &hi);
        return p != NULL && add_range(z, base, lo, hi) == 0 ? p : NULL;
    }
    p++;
    for (;;) {
        p = parse_last(p, &lo, &hi);
        if (p == NULL || add_range(z, base, lo, hi) != 0)
            return NULL;
        if (*p == ']')
            return p + 1;
        if (*p != ';')
            return NULL;
        p++;
    }
}

static int
parse_weight(const char *p, size_t n, int *out)
{
    char buf[16];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    if (*end != '\0' || v < -1000 || v > 1000)
        return -1;
    *out = (int)v;
    return 0;
}

static int
parse_one(const char *p, size_t n, struct dnsbl_zone *z, const char **err_out)
{
    memset(z, 0, sizeof(*z));
    z->weight = 1;
    const char *star = memchr(p, '*', n);
    size_t body = star ? (size_t)(star - p) : n;
    if (star != NULL && parse_weight(star + 1, n - body - 1, &z->weight) != 0) {
        *err_out = "bad weight (an integer from -1000 to 1000 after '*')";
        return -1;
    }
    const char *eq = memchr(p, '=', body);
    size_t zlen = eq ? (size_t)(eq - p) : body;
    if (!dnsname_domain_valid(p, zlen) || zlen >= sizeof(z->name)) {
        *err_out = "bad list zone name";
        return -1;
    }
    memcpy(z->name, p, zlen);
    z->name[zlen] = '\0';
    if (eq == NULL)
        return 0;
    char filter[128];
    size_t flen = body - zlen - 1;
    if (flen == 0 || flen >= sizeof(filter)) {
        *err_out = "bad reply filter";
        return -1;
    }
    memcpy(filter, eq + 1, flen);
    filter[flen] = '\0';
    for (const char *f = filter;;) {
        f = parse_range(f, z);
        if (f == NULL) {
            *err_out = "bad reply filter (like 127.0.0.2, 127.0.0.2..11 or 127.0.0.[2;4..11])";
            return -1;
        }
        if (*f == '\0')
            return 0;
        if (*f != ';') {
            *err_out = "bad reply filter (like 127.0.0.2, 127.0.0.2..11 or 127.0.0.[2;4..11])";
            return -1;
        }
        f++;
    }
}

int
dnsbl_parse(const char *spec, struct dnsbl_list *out, const char **err_out)
{
    memset(out, 0, sizeof(*out));
    const char *p = spec;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            return 0;
        size_t n = strcspn(p, ", \t");
        if (out->n >= DNSBL_MAX_ZONES) {
            *err_out = "too many lists (at most 16)";
            return -1;
        }
        if (parse_one(p, n, &out->zones[out->n], err_out) != 0)
            return -1;
        out->n++;
        p += n;
    }
}

enum dnsbl_answer
dnsbl_classify(const struct dnsbl_zone *z, const uint32_t *addrs, size_t n)
{
    bool listed = false, error = false;
    for (size_t i = 0; i < n; i++) {
        uint32_t a = ntohl(addrs[i]);
        if ((a >> 24) != 127 || (a >> 8) == 0x7fffffu) {
            error = true;
            continue;
        }
        if (z->nranges == 0) {
            listed = true;
            continue;
        }
        for (size_t r = 0; r < z->nranges; r++)
            listed = listed || (a >= z->ranges[r].lo && a <= z->ranges[r].hi);
    }
    if (listed)
        return DNSBL_LISTED;
    return error ? DNSBL_ERROR_CODE : DNSBL_NOT_LISTED;
}

void
dnsbl_score_init(struct dnsbl_score *sc)
{
    memset(sc, 0, sizeof(*sc));
}

void
dnsbl_score_add(struct dnsbl_score *sc, const struct dnsbl_zone *z, enum dnsbl_answer a)
{
    switch (a) {
    case DNSBL_LISTED:
        sc->score += z->weight;
        sc->listed++;
        if (z->weight > 0 && (sc->top == NULL || z->weight > sc->top_weight)) {
            sc->top = z->name;
            sc->top_weight = z->weight;
        }
        return;
    case DNSBL_ERROR_CODE:
        sc->errors++;
        return;
    case DNSBL_TEMPFAIL:
        sc->tempfail++;
        return;
    case DNSBL_NOT_LISTED:
        return;
    }
}

enum dnsbl_verdict
dnsbl_verdict(const struct dnsbl_score *sc, int threshold, int allowlist_threshold)
{
    if (allowlist_threshold < 0 && sc->score <= allowlist_threshold)
        return DNSBL_ALLOWLIST;
    if (threshold > 0 && sc->score >= threshold)
        return DNSBL_BLOCK;
    return DNSBL_PASS;
}

const char *
dnsbl_answer_name(enum dnsbl_answer a)
{
    switch (a) {
    case DNSBL_NOT_LISTED:
        return "not_listed";
    case DNSBL_LISTED:
        return "listed";
    case DNSBL_ERROR_CODE:
        return "error_code";
    case DNSBL_TEMPFAIL:
        return "tempfail";
    }
    return "?";
}
