/*
 * admission.h: the one decision at accept, before any TLS work: may this client have a session?
 * Today the global max_sessions; per-IP limits, rates and access lists plug in here.
 */
#ifndef MOAT_ADMISSION_H
#define MOAT_ADMISSION_H

#include <sys/socket.h>

#include "config.h"

enum admission_verdict { ADMIT_OK = 0, ADMIT_MAX_SESSIONS };

enum admission_verdict admission_check(const struct config *conf, const struct config_listener *l,
                                       const struct sockaddr *peer, socklen_t len);
/* The protocol's refusal line for v into out; 0 on implicit-TLS listeners (plain close). */
int admission_refusal(char *out, size_t cap, const struct config *conf,
                      const struct config_listener *l, enum admission_verdict v);
void admission_log(const struct config_listener *l, const struct sockaddr *peer,
                   enum admission_verdict v);

#endif
