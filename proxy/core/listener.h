/*
 * listener.h: the listening sockets, owned by the main thread. Accepts, applies admission
 * control in one place before any TLS work, and hands sockets to the workers.
 */
#ifndef MOAT_LISTENER_H
#define MOAT_LISTENER_H

#include <ev.h>

#include "admission.h"
#include "common.h"

struct config;
struct tls_ctx;
struct worker;

struct listeners;

/* Bind every listener of conf. On failure returns NULL with a message in err (cap bytes). */
struct listeners *listeners_open(const struct config *conf, char *err, size_t cap);
void listeners_start(struct listeners *ls, struct ev_loop *loop, struct config *conf,
                     struct tls_ctx *tls, struct worker **workers, unsigned nworkers);
/* Switch to a new generation: sockets on unchanged addresses are kept, new addresses bound,
 * removed ones closed. If a new address cannot be bound nothing changes: returns -1 with the
 * reason in err. The caller keeps conf and tls alive as long as the listeners use them. */
int listeners_reload(struct listeners *ls, struct config *conf, struct tls_ctx *tls, char *err,
                     size_t cap);
/* Stop accepting and close every listening socket. */
void listeners_close(struct listeners *ls);
/* The refusal line for v in the words of l's protocol (its table's canned refusals) into out;
 * 0 on implicit-TLS listeners (plain close). */
int listener_refusal(char *out, size_t cap, const struct config *conf,
                     const struct config_listener *l, enum admission_verdict v);
/* Any thread: refuse fd (a connection of l from peer) for v: the log line, the /metrics refusal
 * (into st, or l's own stats when NULL), the protocol's line or a plain close; closes fd. For
 * the accept here and the second step of admission on a worker (intake.c). */
struct stats_listener;
void listener_refuse(int fd, const struct config *conf, const struct config_listener *l,
                     const struct sockaddr *peer, enum admission_verdict v,
                     struct stats_listener *st);

#endif
