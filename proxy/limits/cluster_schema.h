/*
 * cluster_schema.h: what moat keeps in Redis for a fleet (see cluster.h for the semantics): the
 * key names, the fixed windows of the rates and the Lua scripts that make each decision one
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
/* The fixed window now_ms falls in (1 when r has no limit): the rate's keys carry it. */
uint64_t cluster_window(const struct rate *r, uint64_t now_ms);

#endif
