/*
 * cluster_int.h: what cluster.c (the link to Redis: connection, subscriber, replies) and
 * cluster_ops.c (the decisions asked of it: admission, leases, rates, auth failures, logins)
 * share. Only those two include it (and hiredis through it).
 */
#ifndef MOAT_CLUSTER_INT_H
#define MOAT_CLUSTER_INT_H

#include <arpa/inet.h>

#include <ev.h>
#include <hiredis/async.h>

#include "cluster.h"
#include "cluster_schema.h"

#define RING 4096        /* commands in flight per link, at most */
#define CACHE_SLOTS 1024 /* message / recipient counts remembered per link */
#define BACKOFF_MIN_S 0.1
#define BACKOFF_MAX_S 5.0
#define TICK_S 0.1
#define ARGV_MAX 20 /* words of one command */

struct cache_slot {
    struct ratetable_key key;
    enum rate_kind kind;
    uint64_t window; /* window number; 0 = free */
    uint64_t count;  /* in that window */
    uint64_t prev;   /* in the window before it */
};

struct cluster_lease {
    struct cluster_link *link;
    char key[CLUSTER_KEY_MAX];
    char member[48];
    struct cluster_lease *prev, *next;
};

struct cluster_link {
    struct ev_loop *loop;
    const struct authguard *guard; /* the process's client and user tables (session_env) */
    char host[INET6_ADDRSTRLEN];
    int port;
    char *username, *password, *prefix;
    double timeout_s, connect_timeout_s, lease_s;
    redisAsyncContext *ac;
    redisAsyncContext *sub; /* the process's one subscriber to the bans channel, or NULL */
    bool subscriber;        /* this link holds it */
    char channel[CLUSTER_KEY_MAX];
    bool up;
    double connect_started;
    double backoff_s;
    ev_timer retry;
    ev_timer tick;
    double next_renew;
    double sent[RING]; /* send times of the commands in flight, oldest at head */
    size_t head, inflight;
    char sha[CLUSTER_SCRIPTS][41];
    struct cluster_lease *leases;
    struct cache_slot cache[CACHE_SLOTS];
};

enum reply_kind { REPLY_ADMIT = 0, REPLY_FAIL, REPLY_ADD, REPLY_SCRIPT, REPLY_AUTH, REPLY_OTHER };

/* One command in flight: what to do with its reply. */
struct cluster_req {
    struct cluster_link *link;
    enum reply_kind kind;
    void (*on_done)(void *arg, enum cluster_verdict v);
    void *arg;
    struct ratetable_key key;
    enum rate_kind rate_kind;
    uint64_t window;  /* messages' (admission) or the counter's window */
    uint64_t window2; /* recipients' window (admission) */
    uint32_t ban_ms;
    enum cluster_script script;
};

/* The link of e's loop, made (and connecting) on first use; NULL when [cluster] is off. */
struct cluster_link *cluster_link_get(struct session_env *e, const struct config *conf);
/* One command (argv NUL-terminated words) or one script (EVALSHA once loaded); q is freed with
 * its reply, or at once on failure (-1: no link, or too many in flight). */
int cluster_link_sendv(struct cluster_link *c, struct cluster_req *q, int argc, const char **argv);
int cluster_link_eval(struct cluster_link *c, struct cluster_req *q, enum cluster_script s,
                      int nkeys, const char **keys, int nargs, const char **args);
struct cluster_req *cluster_req_new(enum reply_kind kind);
/* The cache slot of the fleet's count of kind for client k (may hold another key). */
struct cache_slot *cluster_cache_slot(struct cluster_link *c, const struct ratetable_key *k,
                                      enum rate_kind kind);
/* Count l's session in Redis again for a lease's time (renewal, reconnect). */
void cluster_lease_renew(struct cluster_lease *l, double now);
/* This process's random name in lease members. */
const char *cluster_replica(void);

#endif
