/*
 * intake.h: the part of admission that runs on a worker, for listeners that learn who the client
 * is only after accept: behind a balancer (proxy_protocol: read the PROXY header first, with its
 * own short timeout and size bound, before any TLS) and in a fleet ([cluster]: ask the shared
 * counters, a bounded wait). Then the same admission as at accept, and the session starts.
 */
#ifndef MOAT_INTAKE_H
#define MOAT_INTAKE_H

#include <sys/socket.h>

#include "admission.h"

struct session_env;
struct tls_ctx;

/* Whether connections of l are admitted through here. */
bool intake_wanted(const struct config *conf, const struct config_listener *l);
/* Main thread, at accept: what can be decided before the client is known (an untrusted
 * balancer, max_sessions, max_tls_handshakes). Logs nothing; the caller refuses. */
enum admission_verdict intake_check_accept(const struct config *conf,
                                           const struct config_listener *l,
                                           const struct sockaddr *peer);
/* Worker (e: its env, which keeps the list and adopts the sessions): take over fd (and one
 * reference on conf and tls) until it is admitted or refused. */
void intake_start(struct session_env *e, int fd, const struct sockaddr *peer, socklen_t peer_len,
                  struct config *conf, const struct config_listener *l, struct tls_ctx *tls);
/* Worker: close every connection still in intake (drain, exit). */
void intake_drop_all(struct session_env *e);

#endif
