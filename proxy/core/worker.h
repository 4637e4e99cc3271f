/*
 * worker.h: N worker threads, each with its own libev loop that owns its sessions. The main
 * thread hands accepted sockets over through a locked queue plus ev_async; everything a session
 * touches afterwards lives on its worker, which hands its sessions what they need in one struct
 * session_env (session_env.h): nothing below calls back up into this file.
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
struct authguard;

/* Start n workers, each handing its sessions the process's tables in guard; returns the array. */
struct worker **workers_start(unsigned n, const struct authguard *guard);
/* Hand an accepted socket to the least-loaded worker. Takes a reference on conf and tls. */
void workers_dispatch(struct worker **ws, unsigned n, int fd, const struct sockaddr *peer,
                      socklen_t peer_len, struct config *conf, const struct config_listener *l,
                      struct tls_ctx *tls);
/* The same for a connection whose admission is not finished (intake.c: a PROXY header to read,
 * or shared counters to consult); it becomes a session only if admitted. */
void workers_dispatch_intake(struct worker **ws, unsigned n, int fd, const struct sockaddr *peer,
                             socklen_t peer_len, struct config *conf,
                             const struct config_listener *l, struct tls_ctx *tls);
/* For the main thread's start-up work on a worker's loop (cluster_start() posts through it). */
struct session_env *worker_env(struct worker *w);
/* Drain: each worker says goodbye to idle sessions and exits once empty or at the deadline. */
void workers_drain(struct worker **ws, unsigned n, double grace_s);
void workers_join(struct worker **ws, unsigned n);

/* In-process tests only (tests/fuzz/fuzz_session.c): a worker without a thread on the caller's
 * loop (which the caller runs); workers_dispatch() on it starts sessions. Its open sessions
 * (list head), whether nothing is queued, posted, open or waiting to be freed, and its end (only
 * when idle; the loop stays the caller's). */
struct worker *worker_local_new(struct ev_loop *loop, const struct authguard *guard);
struct session *worker_local_sessions(const struct worker *w);
bool worker_local_idle(struct worker *w);
void worker_local_free(struct worker *w);

#endif
