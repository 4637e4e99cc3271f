/*
 * worker.h: N worker threads, each with its own libev loop that owns its sessions. The main
 * thread hands accepted sockets over through a locked queue plus ev_async; everything a session
 * touches afterwards lives on its worker.
 */
#ifndef MOAT_WORKER_H
#define MOAT_WORKER_H

#include <ev.h>
#include <sys/socket.h>

#include "common.h"

struct worker;
struct session;
struct config;
struct config_listener;
struct tls_ctx;

/* Start n workers; returns the array. */
struct worker **workers_start(unsigned n);
/* Hand an accepted socket to the least-loaded worker. Takes a reference on conf and tls. */
void workers_dispatch(struct worker **ws, unsigned n, int fd, const struct sockaddr *peer,
                      socklen_t peer_len, struct config *conf, const struct config_listener *l,
                      struct tls_ctx *tls);
/* The same for a connection whose admission is not finished (intake.c: a PROXY header to read,
 * or shared counters to consult); it becomes a session only if admitted. */
void workers_dispatch_intake(struct worker **ws, unsigned n, int fd, const struct sockaddr *peer,
                             socklen_t peer_len, struct config *conf,
                             const struct config_listener *l, struct tls_ctx *tls);
/* intake.c: a connection handed over by workers_dispatch_intake() was admitted (s is its new
 * session), or was refused (it is no longer counted). The worker's list of intakes and its
 * Redis link (cluster.c), kept here like the resolver. */
void worker_session_adopt(struct worker *w, struct session *s);
void worker_intake_dropped(struct worker *w);
struct intake;
struct intake **worker_intake_slot(struct worker *w);
struct cluster_link;
struct cluster_link **worker_cluster_slot(struct worker *w);
/* Drain: each worker says goodbye to idle sessions and exits once empty or at the deadline. */
void workers_drain(struct worker **ws, unsigned n, double grace_s);
void workers_join(struct worker **ws, unsigned n);
/* Sessions open in all workers (for max_sessions). */
unsigned workers_session_count(void);

/* A message another thread posts to a worker: run(m) is called on the worker's loop, which then
 * owns m (run frees it). For results of work done off the loop (the auth pool). */
struct worker_msg {
    struct worker_msg *next;
    void (*run)(struct worker_msg *m);
};
/* Any thread: queue m for w's loop and wake it. */
void worker_post(struct worker *w, struct worker_msg *m);

struct ev_loop *worker_loop(struct worker *w);
/* dns.c keeps the worker's resolver here (created lazily on the worker's thread). */
struct dns_resolver;
struct dns_resolver **worker_dns_slot(struct worker *w);
void worker_kick(struct worker *w, struct session *s);
void worker_defer_finish(struct worker *w, struct session *s);
void worker_session_done(struct worker *w, struct session *s);

/* In-process tests only (tests/fuzz/fuzz_session.c): a worker without a thread on the caller's
 * loop (which the caller runs); workers_dispatch() on it starts sessions. Its open sessions
 * (list head), whether nothing is queued, posted, open or waiting to be freed, and its end (only
 * when idle; the loop stays the caller's). */
struct worker *worker_local_new(struct ev_loop *loop);
struct session *worker_local_sessions(const struct worker *w);
bool worker_local_idle(struct worker *w);
void worker_local_free(struct worker *w);

#endif
