/*
 * cluster.h: limits, rates and bans shared by a fleet of moats through Redis ([cluster]). Each
 * worker has its own asynchronous link on its own loop; nothing here ever blocks a session: a
 * request is answered later through a callback, and when the link is down (or the caller's short
 * wait runs out) the caller decides on its local counters alone. Shared state only ever adds
 * refusals to the local decision, it never admits what the local counters refuse.
 * Semantics (keys under [cluster] prefix, all with a TTL so nothing outlives a dead moat):
 *   c:<client>           sessions: a sorted set of leases (member per session, score = expiry
 *                        on the wall clock); a live moat renews its leases every lease/3; a dead
 *                        one's expire
 *   r:<client>:<window>  connections in one fixed window of connection_rate_per_ip (INCR, TTL two
 *                        windows); a rate is the sliding estimate over it and the window before
 *                        (cluster_schema.h), windows numbered on the wall clock
 *   m:/n:<client>:<w>    messages / recipients, the same way (INCRBY)
 *   f:<client>:<w>       auth failures; at ban_ip.count the script sets b:<client> PX ban_time
 *   u:<user>:<w>         auth failures per user name (familiar clients not counted), then
 *                        k:<user> PX ban_time
 *   <prefix>bans         a channel: bans as they are set ("c|u KEY MS") and logins ("f USER
 *                        CLIENT"), mirrored by one subscriber per moat into its local tables,
 *                        so a ban holds on every moat at once (and while Redis is down later)
 *                        and a familiar address stays familiar on every moat
 * Every multi-key step is one Lua script (atomic in Redis): one round trip per decision.
 */
#ifndef MOAT_CLUSTER_H
#define MOAT_CLUSTER_H

#include "config.h"
#include "ratetable.h"

struct session_env;
struct cluster_link;
struct cluster_lease;
struct cluster_req;

enum cluster_verdict {
    CLUSTER_OK = 0,
    CLUSTER_UNKNOWN, /* no answer (link down, slow, error): decide locally */
    CLUSTER_PER_IP,  /* max_sessions_per_ip across the fleet */
    CLUSTER_RATE,    /* connection_rate_per_ip across the fleet */
    CLUSTER_BANNED   /* a ban earned on any moat */
};

bool cluster_enabled(const struct config *conf);
/* Main thread, at start, once per worker (e: the env it hands its sessions): the worker connects
 * its link now rather than at its first client. [cluster] is read once: a reload does not
 * change it. */
void cluster_start(struct session_env *e, struct config *conf);

/* Admission of a client the local table admitted: ask Redis. Returns NULL when there is no
 * link up (the answer is CLUSTER_UNKNOWN now); otherwise on_done(arg, v) runs later on e's loop
 * unless cluster_req_cancel() came first. *lease_out is the session's lease either way (may be
 * NULL): hand it to cluster_lease_end() when the session ends, whatever the verdict. dry: count
 * even when refusing (limits_mode = log). */
struct cluster_req *cluster_admit(struct session_env *e, const struct config *conf,
                                  const struct config_listener *l, const struct ratetable_key *k,
                                  bool dry, struct cluster_lease **lease_out,
                                  void (*on_done)(void *arg, enum cluster_verdict v), void *arg);
/* The caller stops waiting: on_done will not be called. */
void cluster_req_cancel(struct cluster_req *r);
/* The session holding l ended: its count leaves Redis now (or at the lease's expiry). */
void cluster_lease_end(struct cluster_lease *l);

/* Message / recipient rates: whether n more events of kind fit rate by the fleet's count last
 * seen (synchronous, from this worker's cache; true when unknown), and counting them. */
bool cluster_rate_allows(struct session_env *e, const struct config *conf,
                         const struct ratetable_key *k, enum rate_kind kind,
                         const struct rate *rate, uint32_t n);
void cluster_rate_add(struct session_env *e, const struct config *conf,
                      const struct ratetable_key *k, enum rate_kind kind, const struct rate *rate,
                      uint32_t n);
/* A failed login from client k (user may be NULL/empty; familiar: the client is familiar for
 * the user, so the user name is not counted). A ban earned in Redis is mirrored into the local
 * admission table when the answer comes. */
void cluster_auth_failure(struct session_env *e, const struct config *conf,
                          const struct config_auth *a, const struct ratetable_key *k,
                          const char *user, size_t user_len, bool familiar);

/* A successful login of user from client k: every moat of the fleet takes the client as
 * familiar for the user (smart lockout holds across the fleet). */
void cluster_login(struct session_env *e, const struct config *conf, const struct ratetable_key *k,
                   const char *user, size_t user_len);
void cluster_link_free(struct cluster_link *c);

#endif
