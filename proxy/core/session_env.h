/*
 * session_env.h: what a worker hands down to the sessions it runs, in one struct: its loop, its
 * resolver, the process's per-client and ban tables, and the few things only the worker can do for
 * a session (re-dispatch it on the next turn, finish and free it later, take a message from another
 * thread). Sessions and what they use (backend, auth, DNS checks, the resolver) reach the worker
 * only through this; none of them includes worker.h.
 */
#ifndef MOAT_SESSION_ENV_H
#define MOAT_SESSION_ENV_H

#include <ev.h>

struct session;
struct dns_resolver;
struct authguard;
struct intake;
struct cluster_link;

/* A message another thread posts to a loop: run(m) is called on that loop, which then owns m
 * (run frees it). For results of work done off the loop (the auth pool). */
struct worker_msg {
    struct worker_msg *next;
    void (*run)(struct worker_msg *m);
};

struct session_env {
    struct ev_loop *loop;
    /* dns.c keeps the loop's resolver here (created lazily on the loop's thread). */
    struct dns_resolver *resolver;
    /* intake.c: the loop's connections not admitted yet (behind a balancer, in a fleet). */
    struct intake *intakes;
    /* cluster.c: the loop's Redis link ([cluster]), made on first use or by cluster_start(). */
    struct cluster_link *cluster;
    /* Re-dispatch s from the loop's next turn (input resumed, STARTTLS outside a callback). */
    void (*kick)(struct session_env *e, struct session *s);
    /* Finish s (if not yet) and free it from the loop, never inside the current callback. */
    void (*defer_free)(struct session_env *e, struct session *s);
    /* s has written its closing line: it leaves the worker's sessions (then defer_free). */
    void (*done)(struct session_env *e, struct session *s);
    /* Any thread: queue m for this loop and wake it. */
    void (*post)(struct session_env *e, struct worker_msg *m);
    /* intake.c: a connection handed over as an intake was admitted and s is its new session
     * (it joins the worker's sessions), or it was refused (the worker no longer counts it). */
    void (*adopt)(struct session_env *e, struct session *s);
    void (*intake_dropped)(struct session_env *e);
    /* The process's shared tables (made at start, locking themselves): guard->clients is
     * admission's per-client table (client message and recipient rates, client bans), with the
     * login ban tables beside it. */
    const struct authguard *guard;
};

#endif
