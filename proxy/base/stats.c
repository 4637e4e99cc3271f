/*
 * stats.c: the process-wide counter table for /metrics (see stats.h). Slots are appended by the
 * main thread and published through an atomic count, so readers on other threads never lock.
 * Holds no pointers into a config generation and never allocates after registration.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "stats.h"

static struct stats_listener slots[STATS_MAX_LISTENERS];
static atomic_size_t nslots;

/* main thread only (stats_set_certs, stats_render) */
static struct {
    char label[256]; /* the file name escaped for a label value */
    time_t not_after;
} certs[STATS_MAX_CERTS];
static size_t ncerts;

static const double duration_bounds_s[STATS_DURATION_BUCKETS] = {0.1, 0.5, 1,   5,   10,
                                                                 30,  60,  300, 1800};

static const char *const refusal_names[] = {
    [STAT_REFUSED_LIMIT] = "limit",
    [STAT_REFUSED_ACCESS] = "access_list",
    [STAT_REFUSED_DNSBL] = "dnsbl",
    [STAT_REFUSED_RELAY] = "relay",
    [STAT_REFUSED_SMUGGLING] = "smuggling",
    [STAT_REFUSED_STARTTLS_INJECTION] = "starttls_injection",
    [STAT_REFUSED_ALPN] = "alpn_mismatch",
    [STAT_REFUSED_URIBL] = "uribl",
};

static const char *const tls_failure_names[] = {
    [STAT_TLS_FAIL_HANDSHAKE] = "handshake_error",
    [STAT_TLS_FAIL_TIMEOUT] = "timeout",
    [STAT_TLS_FAIL_ALPN] = "alpn_mismatch",
};

const char *
stat_refusal_name(enum stat_refusal r)
{
    return (size_t)r < ARRAY_SIZE(refusal_names) ? refusal_names[r] : "?";
}

const char *
stat_tls_failure_name(enum stat_tls_failure f)
{
    return (size_t)f < ARRAY_SIZE(tls_failure_names) ? tls_failure_names[f] : "?";
}

struct stats_listener *
stats_find(const char *name)
{
    size_t n = atomic_load(&nslots);
    for (size_t i = 0; i < n; i++) {
        /* names longer than the slot are compared on the part that fits */
        size_t cut = strnlen(name, sizeof(slots[i].name) - 1);
        if (strlen(slots[i].name) == cut && strncmp(slots[i].name, name, cut) == 0)
            return &slots[i];
    }
    return NULL;
}

struct stats_listener *
stats_register(const char *name, const char *proto)
{
    struct stats_listener *l = stats_find(name);
    if (l == NULL) {
        size_t n = atomic_load(&nslots);
        if (n == STATS_MAX_LISTENERS)
            return NULL;
        l = &slots[n];
        snprintf(l->name, sizeof(l->name), "%s", name);
        for (size_t i = 0; l->name[i] != '\0'; i++) {
            char c = l->name[i];
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-';
            l->label[i] = ok ? c : '_';
        }
        atomic_store(&l->ready, -1);
        atomic_store(&nslots, n + 1);
    }
    snprintf(l->proto, sizeof(l->proto), "%s", proto);
    atomic_store(&l->active, true);
    return l;
}

void
stats_deactivate_all(void)
{
    size_t n = atomic_load(&nslots);
    for (size_t i = 0; i < n; i++)
        atomic_store(&slots[i].active, false);
}

void
stats_add(struct stats_listener *l, enum stat_counter c, uint64_t n)
{
    if (l != NULL && n > 0)
        atomic_fetch_add_explicit(&l->counters[c], n, memory_order_relaxed);
}

void
stats_tls_failure(struct stats_listener *l, enum stat_tls_failure f)
{
    if (l != NULL)
        atomic_fetch_add_explicit(&l->tls_failures[f], 1, memory_order_relaxed);
}

void
stats_refusal(struct stats_listener *l, enum stat_refusal r)
{
    if (l != NULL)
        atomic_fetch_add_explicit(&l->refusals[r], 1, memory_order_relaxed);
}

void
stats_mark(struct stats_listener *l, enum stat_mark m)
{
    switch (m) {
    case STAT_MARK_NONE:
        return;
    case STAT_MARK_REFUSED_LIMIT:
        stats_refusal(l, STAT_REFUSED_LIMIT);
        return;
    case STAT_MARK_REFUSED_ACCESS:
        stats_refusal(l, STAT_REFUSED_ACCESS);
        return;
    case STAT_MARK_REFUSED_DNSBL:
        stats_refusal(l, STAT_REFUSED_DNSBL);
        return;
    case STAT_MARK_REFUSED_RELAY:
        stats_refusal(l, STAT_REFUSED_RELAY);
        return;
    case STAT_MARK_REFUSED_SMUGGLING:
        stats_refusal(l, STAT_REFUSED_SMUGGLING);
        return;
    case STAT_MARK_REFUSED_URIBL:
        stats_refusal(l, STAT_REFUSED_URIBL);
        return;
    case STAT_MARK_BACKEND_CONNECT_FAILURE:
        stats_add(l, STAT_BACKEND_CONNECT_FAILURES, 1);
        return;
    case STAT_MARK_TLS_HANDSHAKE_FAILED:
        stats_tls_failure(l, STAT_TLS_FAIL_HANDSHAKE);
        return;
    case STAT_MARK_TLS_HANDSHAKE_TIMEOUT:
        stats_tls_failure(l, STAT_TLS_FAIL_TIMEOUT);
        return;
    case STAT_MARK_TLS_ALPN_MISMATCH:
        stats_tls_failure(l, STAT_TLS_FAIL_ALPN);
        stats_refusal(l, STAT_REFUSED_ALPN);
        return;
    }
}

void
stats_session_open(struct stats_listener *l)
{
    if (l == NULL)
        return;
    atomic_fetch_add_explicit(&l->sessions_open, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->counters[STAT_SESSIONS_TOTAL], 1, memory_order_relaxed);
}

void
stats_session_close(struct stats_listener *l, uint64_t duration_ms)
{
    if (l == NULL)
        return;
    atomic_fetch_sub_explicit(&l->sessions_open, 1, memory_order_relaxed);
    size_t b = 0;
    while (b < STATS_DURATION_BUCKETS && duration_ms > duration_bounds_s[b] * 1000)
        b++;
    if (b < STATS_DURATION_BUCKETS)
        atomic_fetch_add_explicit(&l->duration_buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->duration_sum_ms, duration_ms, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->duration_count, 1, memory_order_relaxed);
}

void
stats_set_certs(size_t n, const char *const files[], const time_t not_after[])
{
    ncerts = MOAT_MIN(n, (size_t)STATS_MAX_CERTS);
    for (size_t i = 0; i < ncerts; i++) {
        /* Prometheus label values escape backslash, double quote and newline */
        size_t k = 0;
        for (const char *f = files[i]; *f != '\0' && k + 3 < sizeof(certs[i].label); f++) {
            if (*f == '\\' || *f == '"' || *f == '\n')
                certs[i].label[k++] = '\\';
            certs[i].label[k++] = *f == '\n' ? 'n' : *f;
        }
        certs[i].label[k] = '\0';
        certs[i].not_after = not_after[i];
    }
}

/* --- rendering --- */

struct out {
    char *p;
    size_t cap, len;
    bool full;
};

static void MOAT_PRINTF(2, 3) out_printf(struct out *o, const char *fmt, ...)
{
    if (o->full)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->full = true;
        return;
    }
    o->len += (size_t)n;
}

static void
header(struct out *o, const char *name, const char *type, const char *help)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static unsigned long long
ld(atomic_ullong *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void
render_counter(struct out *o, size_t n, const char *name, const char *help, enum stat_counter c)
{
    header(o, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        if (atomic_load(&slots[i].active))
            out_printf(o, "%s{listener=\"%s\"} %llu\n", name, slots[i].label,
                       ld(&slots[i].counters[c]));
    }
}

static void
render_labelled(struct out *o, size_t n)
{
    header(o, "moat_tls_handshake_failures_total", "counter", "TLS handshakes that failed.");
    for (size_t i = 0; i < n; i++) {
        for (int f = 0; f < STAT_TLS_FAIL_COUNT && atomic_load(&slots[i].active); f++)
            out_printf(o, "moat_tls_handshake_failures_total{listener=\"%s\",reason=\"%s\"} %llu\n",
                       slots[i].label, tls_failure_names[f], ld(&slots[i].tls_failures[f]));
    }
    header(o, "moat_refusals_total", "counter", "Connections, commands or messages refused.");
    for (size_t i = 0; i < n; i++) {
        for (int r = 0; r < STAT_REFUSAL_COUNT && atomic_load(&slots[i].active); r++)
            out_printf(o, "moat_refusals_total{listener=\"%s\",control=\"%s\"} %llu\n",
                       slots[i].label, refusal_names[r], ld(&slots[i].refusals[r]));
    }
}

static void
render_histogram(struct out *o, size_t n)
{
    const char *name = "moat_session_duration_seconds";
    header(o, name, "histogram", "Session duration from accept to close.");
    for (size_t i = 0; i < n; i++) {
        struct stats_listener *l = &slots[i];
        if (!atomic_load(&l->active))
            continue;
        unsigned long long cum = 0;
        for (int b = 0; b < STATS_DURATION_BUCKETS; b++) {
            cum += ld(&l->duration_buckets[b]);
            out_printf(o, "%s_bucket{listener=\"%s\",le=\"%g\"} %llu\n", name, l->label,
                       duration_bounds_s[b], cum);
        }
        unsigned long long count = ld(&l->duration_count);
        out_printf(o, "%s_bucket{listener=\"%s\",le=\"+Inf\"} %llu\n", name, l->label, count);
        out_printf(o, "%s_sum{listener=\"%s\"} %.3f\n", name, l->label,
                   (double)ld(&l->duration_sum_ms) / 1000.0);
        out_printf(o, "%s_count{listener=\"%s\"} %llu\n", name, l->label, count);
    }
}

static atomic_bool cluster_on;
static atomic_int cluster_links;
static atomic_ullong cluster_counters[STAT_CLUSTER_COUNT];

void
stats_cluster_enable(void)
{
    atomic_store(&cluster_on, true);
}

void
stats_cluster_add(enum stat_cluster c)
{
    atomic_fetch_add_explicit(&cluster_counters[c], 1, memory_order_relaxed);
}

void
stats_cluster_links(int delta)
{
    atomic_fetch_add(&cluster_links, delta);
}

static void
render_cluster(struct out *o)
{
    if (!atomic_load(&cluster_on))
        return;
    header(o, "moat_cluster_links_up", "gauge",
           "Worker links to the fleet's Redis that are up (0: local counters only).");
    out_printf(o, "moat_cluster_links_up %d\n", atomic_load(&cluster_links));
    static const char *const names[STAT_CLUSTER_COUNT][2] = {
        {"moat_cluster_requests_total", "Commands sent to the fleet's Redis."},
        {"moat_cluster_fallbacks_total",
         "Admissions decided on local counters because Redis was down or slow."},
        {"moat_cluster_errors_total", "Redis error replies and lost connections."},
    };
    for (int i = 0; i < STAT_CLUSTER_COUNT; i++) {
        header(o, names[i][0], "counter", names[i][1]);
        out_printf(o, "%s %llu\n", names[i][0], ld(&cluster_counters[i]));
    }
}

static struct {
    size_t (*count)(void *arg);
    void *arg;
    size_t capacity;
} tables[STAT_TABLE_COUNT];

void
stats_table(enum stat_table t, size_t (*count)(void *arg), void *arg, size_t capacity)
{
    tables[t].count = count;
    tables[t].arg = arg;
    tables[t].capacity = capacity;
}

static void
render_tables(struct out *o)
{
    static const char *const names[STAT_TABLE_COUNT] = {"clients", "users", "familiar"};
    header(o, "moat_table_entries", "gauge",
           "Entries in a bounded table (clients, user names, familiar user/address pairs).");
    for (int t = 0; t < STAT_TABLE_COUNT; t++)
        if (tables[t].count != NULL)
            out_printf(o, "moat_table_entries{table=\"%s\"} %zu\n", names[t],
                       tables[t].count(tables[t].arg));
    header(o, "moat_table_capacity", "gauge",
           "Entries a bounded table holds; when full, the least recently used go first.");
    for (int t = 0; t < STAT_TABLE_COUNT; t++)
        if (tables[t].count != NULL)
            out_printf(o, "moat_table_capacity{table=\"%s\"} %zu\n", names[t], tables[t].capacity);
}

long
stats_render(char *p, size_t cap)
{
    struct out o = {.p = p, .cap = cap};
    size_t n = atomic_load(&nslots);
    header(&o, "moat_sessions_open", "gauge", "Sessions open now.");
    for (size_t i = 0; i < n; i++) {
        if (atomic_load(&slots[i].active))
            out_printf(
                &o, "moat_sessions_open{listener=\"%s\",proto=\"%s\"} %lld\n", slots[i].label,
                slots[i].proto,
                (long long)atomic_load_explicit(&slots[i].sessions_open, memory_order_relaxed));
    }
    render_counter(&o, n, "moat_sessions_total", "Sessions accepted.", STAT_SESSIONS_TOTAL);
    render_counter(&o, n, "moat_tls_handshakes_total", "TLS handshakes completed.",
                   STAT_TLS_HANDSHAKES);
    render_labelled(&o, n);
    render_counter(&o, n, "moat_auth_successes_total", "Logins accepted.", STAT_AUTH_SUCCESS);
    render_counter(&o, n, "moat_auth_failures_total", "Logins refused.", STAT_AUTH_FAILURE);
    render_counter(&o, n, "moat_client_bytes_in_total", "Bytes received from clients.",
                   STAT_BYTES_IN);
    render_counter(&o, n, "moat_client_bytes_out_total", "Bytes sent to clients.", STAT_BYTES_OUT);
    render_counter(&o, n, "moat_backend_connect_failures_total",
                   "Backend connection attempts that failed.", STAT_BACKEND_CONNECT_FAILURES);
    render_histogram(&o, n);
    header(&o, "moat_backend_up", "gauge", "1 when the listener's backend accepts connections.");
    for (size_t i = 0; i < n; i++) {
        int r = atomic_load(&slots[i].ready);
        if (atomic_load(&slots[i].active) && r >= 0)
            out_printf(&o, "moat_backend_up{listener=\"%s\"} %d\n", slots[i].label, r);
    }
    header(&o, "moat_tls_certificate_expiry_seconds", "gauge",
           "Seconds until the certificate's notAfter (negative: expired).");
    time_t now = time(NULL);
    for (size_t i = 0; i < ncerts; i++) {
        if (certs[i].not_after != 0)
            out_printf(&o, "moat_tls_certificate_expiry_seconds{file=\"%s\"} %lld\n",
                       certs[i].label, (long long)(certs[i].not_after - now));
    }
    render_tables(&o);
    render_cluster(&o);
    return o.full ? -1 : (long)o.len;
}
