/*
 * stats.h: the counters behind /metrics. One slot per listener name, registered by the main
 * thread (startup and reload) and never freed, so counters survive reloads; every update is a
 * relaxed atomic, safe from any thread. stats_render() writes Prometheus text and is pure
 * (the caller passes the buffer), so it is unit-tested without sockets.
 */
#ifndef MOAT_STATS_H
#define MOAT_STATS_H

#include <stdatomic.h>
#include <time.h>

#include "common.h"

#define STATS_MAX_LISTENERS 64
#define STATS_DURATION_BUCKETS 9 /* finite upper bounds; +Inf is the count */
#define STATS_MAX_CERTS 8

enum stat_counter {
    STAT_SESSIONS_TOTAL = 0,
    STAT_TLS_HANDSHAKES,
    STAT_AUTH_SUCCESS,
    STAT_AUTH_FAILURE,
    STAT_BYTES_IN,  /* from the client */
    STAT_BYTES_OUT, /* to the client */
    STAT_BACKEND_CONNECT_FAILURES,
    STAT_COUNTER_COUNT
};

enum stat_tls_failure {
    STAT_TLS_FAIL_HANDSHAKE = 0, /* protocol or certificate error */
    STAT_TLS_FAIL_TIMEOUT,
    STAT_TLS_FAIL_ALPN,
    STAT_TLS_FAIL_COUNT
};

/* Which control refused something (a connection, a command, a message). */
enum stat_refusal {
    STAT_REFUSED_LIMIT = 0,
    STAT_REFUSED_ACCESS,
    STAT_REFUSED_DNSBL,
    STAT_REFUSED_RELAY,
    STAT_REFUSED_SMUGGLING,
    STAT_REFUSED_STARTTLS_INJECTION,
    STAT_REFUSED_ALPN,
    STAT_REFUSED_URIBL,
    STAT_REFUSAL_COUNT
};

/* What one log event or close reason counts (events.h binds each to one of these). */
enum stat_mark {
    STAT_MARK_NONE = 0,
    STAT_MARK_REFUSED_LIMIT,
    STAT_MARK_REFUSED_ACCESS,
    STAT_MARK_REFUSED_DNSBL,
    STAT_MARK_REFUSED_RELAY,
    STAT_MARK_REFUSED_SMUGGLING,
    STAT_MARK_REFUSED_URIBL,
    STAT_MARK_BACKEND_CONNECT_FAILURE,
    STAT_MARK_TLS_HANDSHAKE_FAILED,
    STAT_MARK_TLS_HANDSHAKE_TIMEOUT,
    STAT_MARK_TLS_ALPN_MISMATCH /* a TLS failure and a refusal */
};

struct stats_listener {
    char name[64];  /* the listener's section name, for lookup */
    char label[64]; /* the same with anything but [A-Za-z0-9_.-] as '_', for label values */
    char proto[16];
    atomic_ullong counters[STAT_COUNTER_COUNT];
    atomic_ullong tls_failures[STAT_TLS_FAIL_COUNT];
    atomic_ullong refusals[STAT_REFUSAL_COUNT];
    atomic_llong sessions_open;
    atomic_ullong duration_buckets[STATS_DURATION_BUCKETS]; /* not cumulative */
    atomic_ullong duration_count;
    atomic_ullong duration_sum_ms;
    atomic_int ready;   /* -1 unknown, 0 backend unreachable, 1 reachable (set by the prober) */
    atomic_bool active; /* in the current configuration */
};

/* The slot for a listener name, created if new (main thread only). NULL when the table is full. */
struct stats_listener *stats_register(const char *name, const char *proto);
/* Lookup from any thread; NULL if the name was never registered. */
struct stats_listener *stats_find(const char *name);
/* Mark every slot inactive before a (re)registration pass; inactive slots are not rendered. */
void stats_deactivate_all(void);

void stats_add(struct stats_listener *l, enum stat_counter c, uint64_t n);
void stats_tls_failure(struct stats_listener *l, enum stat_tls_failure f);
void stats_refusal(struct stats_listener *l, enum stat_refusal r);
void stats_mark(struct stats_listener *l, enum stat_mark m);
void stats_session_open(struct stats_listener *l);
void stats_session_close(struct stats_listener *l, uint64_t duration_ms);

/* The current generation's certificate files and when each expires (0: unknown, not rendered).
 * Main thread only, like stats_render: set at startup and after each successful reload. */
void stats_set_certs(size_t n, const char *const files[], const time_t not_after[]);

const char *stat_refusal_name(enum stat_refusal r);
const char *stat_tls_failure_name(enum stat_tls_failure f);

/* Prometheus text exposition format 0.0.4 of every active slot. Returns the length written,
 * or -1 when cap is too small. */
long stats_render(char *out, size_t cap);

/* The fleet's shared counters (cluster.c): rendered once a Redis link was made. */
enum stat_cluster {
    STAT_CLUSTER_REQUESTS = 0, /* commands sent to Redis */
    STAT_CLUSTER_FALLBACKS,    /* decisions taken on local counters: Redis down or slow */
    STAT_CLUSTER_ERRORS,       /* error replies and lost connections */
    STAT_CLUSTER_COUNT
};
void stats_cluster_enable(void);
void stats_cluster_add(enum stat_cluster c);
void stats_cluster_links(int delta);

/* The bounded tables, shown as entries and capacity so an operator sees one fill up: the
 * per-client table, the user-name table and the familiar pairs. Each is registered once at
 * startup (main thread) with a function that counts its entries; NULL: not shown. */
enum stat_table { STAT_TABLE_CLIENTS = 0, STAT_TABLE_USERS, STAT_TABLE_FAMILIAR, STAT_TABLE_COUNT };
void stats_table(enum stat_table t, size_t (*count)(void *arg), void *arg, size_t capacity);

#endif
