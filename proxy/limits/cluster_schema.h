/*
 * cluster_schema.h: what moat keeps in Redis for a fleet (see cluster.h for the semantics): the
 * key names, the windows of the rates and the Lua scripts that make each decision one
 * atomic round trip. Pure: no I/O, no hiredis.
 */
#ifndef MOAT_CLUSTER_SCHEMA_H
#define MOAT_CLUSTER_SCHEMA_H

#include "ratetable.h"

#define CLUSTER_KEY_MAX 160

enum cluster_script {
    CLUSTER_SCRIPT_ADMIT = 0, /* ban?, sessions lease, connection rate; message counts */
    CLUSTER_SCRIPT_FAIL,      /* auth failure: counts, bans (published) */
    CLUSTER_SCRIPT_ADD,       /* a message / recipient counter */
    CLUSTER_SCRIPT_RENEW,     /* a session's lease */
    CLUSTER_SCRIPTS
};
extern const char *const cluster_scripts[CLUSTER_SCRIPTS];

/* "<prefix><kind>:{<client>}" or, for a window, "...:<window>" into out (CLUSTER_KEY_MAX).
 * The client is an address ("192.0.2.7", "2001:db8::/64") or a user name's hash in hex: the
 * braces make every key of one client a Redis Cluster hash tag. */
void cluster_key(const char *prefix, char *out, const char *kind, const struct ratetable_key *k,
                 uint64_t window);
/* Rates are sliding windows like the local table's: the count of the fixed window now_ms (wall
 * clock: every replica numbers the windows alike) falls in, plus the previous window's count
 * times the share of it the sliding window still covers. */
#define CLUSTER_WEIGHT_ONE 1000000u /* weights are in millionths */
/* The fixed window now_ms falls in (1 when r has no limit): the rate's keys carry it. */
uint64_t cluster_window(const struct rate *r, uint64_t now_ms);
/* The keys of that window and of the one before it (CLUSTER_KEY_MAX each). */
void cluster_rate_keys(const char *prefix, char *cur, char *prev, const char *kind,
                       const struct ratetable_key *k, const struct rate *r, uint64_t now_ms);
/* The share of the previous window that still counts at now_ms, in millionths. */
uint32_t cluster_prev_weight(const struct rate *r, uint64_t now_ms);
/* The events in the sliding window: cur + prev x weight, rounded down as the scripts do. */
uint64_t cluster_rate_estimate(uint64_t cur, uint64_t prev, uint32_t weight);
/* A window's counter lives two windows: the next one still reads it. */
uint64_t cluster_rate_ttl(const struct rate *r);

#endif
