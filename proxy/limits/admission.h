/*
 * admission.h: the one decision at accept, before any TLS work: may this client have a session?
 * Access lists, the global session cap, TLS handshakes in progress, and per-client sessions and
 * connection rate in a bounded table shared by all threads. Workers report the end of counted
 * sessions and handshakes, and ask for per-client message/recipient rates, through here.
 */
#ifndef MOAT_ADMISSION_H
#define MOAT_ADMISSION_H

#include <sys/socket.h>

#include "config.h"
#include "ratetable.h"

enum admission_verdict {
    ADMIT_OK = 0,
    ADMIT_MAX_SESSIONS,    /* global max_sessions */
    ADMIT_DENIED,          /* [access] deny */
    ADMIT_PER_IP,          /* max_sessions_per_ip */
    ADMIT_RATE,            /* connection_rate_per_ip */
    ADMIT_TLS_HANDSHAKES,  /* max_tls_handshakes in progress (implicit-TLS listeners) */
    ADMIT_TABLE_FULL,      /* every tracked client has live sessions */
    ADMIT_BANNED,          /* a ban from the auth service */
    ADMIT_PROXY_UNTRUSTED, /* a proxy_protocol listener: the peer is not in proxy_trusted */
    ADMIT_PROXY_HEADER     /* a proxy_protocol listener: no valid header in time */
};

/* Main thread, at accept. Refusals are returned (the caller logs and refuses); in dry-run mode
 * (limits_mode / [access] mode = log) this logs event=would_refuse itself and returns ADMIT_OK.
 * An admitted client is counted (in the per-client table and the global session count) until
 * admission_session_end(). */
enum admission_verdict admission_check(const struct config *conf, const struct config_listener *l,
                                       const struct sockaddr *peer, socklen_t len);
/* The same in two steps, for listeners that learn the client's address after accept (intake.c):
 * what does not depend on the client (max_sessions, max_tls_handshakes) at accept, then access
 * lists and the per-client table (and the process bounds again) once the address is known
 * (counted as admission_check does). */
enum admission_verdict admission_check_accept(const struct config *conf,
                                              const struct config_listener *l);
enum admission_verdict admission_check_client(const struct config *conf,
                                              const struct config_listener *l,
                                              const struct sockaddr *peer);
/* What a refusal for v says after the protocol's words (listener_refusal() writes the line). */
const char *admission_refusal_text(enum admission_verdict v);
void admission_log(const struct config_listener *l, const struct sockaddr *peer,
                   enum admission_verdict v);
const char *admission_verdict_name(enum admission_verdict v);

/* A session in no client's count (a balancer's PROXY LOCAL health check): counted in the
 * global session count only; its end is admission_session_end() with peer NULL. */
void admission_count_uncounted(void);
/* Any thread: a session admitted by admission_check() on listener l from peer has ended (peer
 * NULL: one counted by admission_count_uncounted()). */
void admission_session_end(const struct config_listener *l, const struct sockaddr *peer);
/* Any thread: a TLS handshake started / ended (counted for max_tls_handshakes). */
void admission_handshake_begin(void);
void admission_handshake_end(void);
unsigned admission_handshakes(void);

/* Main thread, before the workers start: the per-client table, made once (later calls return
 * it). The workers hand it to their sessions (session_env) for client rates and the auth
 * service's bans; its keys for client addresses come from admission_client_key(). */
struct ratetable *admission_start(const struct config *conf);
/* Allow-listed ([access] allow): exempt from deny and from every per-client limit. */
bool admission_exempt(const struct config_listener *l, const struct sockaddr *peer);
void admission_client_key(struct ratetable_key *k, const struct config_listener *l,
                          const struct sockaddr *peer);

#endif
