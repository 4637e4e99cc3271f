/*
 * session.h: the core's view of one client session: both connection legs, the one timer, the
 * phase, the protocol state and the bookkeeping for the closing log line. Only core files
 * include this; protocols see struct session as opaque through protocol.h.
 */
#ifndef MOAT_SESSION_H
#define MOAT_SESSION_H

#include <netinet/in.h>

#include "conn.h"
#include "protocol.h"

struct session_env;
struct tls_ctx;
struct stats_listener;

struct session {
    uint32_t id;
    char sid[12];
    struct session_env *env; /* what the worker running it hands down */
    struct config *conf;     /* this session's generation (one reference) */
    const struct config_listener *listener;
    struct stats_listener *stats; /* this listener's /metrics counters (may be NULL) */
    const struct protocol *proto;
    void *proto_state;
    struct tls_ctx *tls_ctx; /* one reference, or NULL when the listener has no TLS */
    struct conn client;
    struct conn backend;
    ev_timer timer;
    enum session_phase phase;
    enum session_phase close_phase;
    double start;              /* ev_now at accept */
    double phase_deadline;     /* absolute deadline of this phase (0 = none) */
    double total_deadline;     /* end of the pre-auth phase as a whole (0 = none) */
    double idle_s;             /* idle timeout of this phase (0 = none) */
    double backend_wait_since; /* 0 = not waiting for a backend reply */
    double connect_deadline;   /* current backend address attempt (0 = none) */
    double linger_deadline;    /* closing: flushing the last reply */
    double proto_deadline;     /* session_timer_start(): the protocol's own timer (0 = none) */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct sockaddr_storage local;
    socklen_t local_len;
    char client_addr[INET6_ADDRSTRLEN];
    unsigned client_port;
    char local_addr[INET6_ADDRSTRLEN];
    unsigned local_port;
    char backend_addr[INET6_ADDRSTRLEN + 8];
    size_t backend_next; /* next backend address to try */
    char user[128];
    const char *tls_version; /* static strings from the TLS library, kept for the log */
    const char *tls_cipher;
    uint32_t errors;
    uint32_t preauth_commands; /* [limits] max_preauth_commands: STARTTLS keeps the count */
    enum close_reason reason;
    bool closing;
    bool closed;
    bool relaying;
    bool input_paused;
    bool starttls_pending;
    bool in_dispatch;
    bool in_backend_dispatch;
    bool redispatch;
    bool kicked;
    bool client_eof;          /* the client closed its side: answer what it asked, then close */
    bool dns_owes_client;     /* the protocol holds an answer until DNS answers are in (uribl.c) */
    bool in_handshake;        /* counted in admission's TLS handshakes in progress */
    bool admission_uncounted; /* in no client's count (a PROXY LOCAL health check) */
    bool past_preauth;        /* reached a post-auth phase once: preauth_total no longer applies */
    const char *timeout_name; /* the timeout that ended the session, for the closing line */
    bool draining;            /* shutdown asked; close when idle */
    bool resume_on_backend_drain; /* session_input_pause_until_backend_drained() */
    struct session *prev, *next;  /* worker's list */
    struct session *kick_next;    /* worker's list of sessions to re-dispatch */
    /* the auth service and the failure delay (session_auth.c) */
    struct auth_job *auth_job;   /* in the pool, or NULL */
    double auth_deadline;        /* deliver auth_status by then (0 = nothing pending) */
    enum auth_status auth_early; /* result to deliver at auth_deadline when auth_job is NULL */
    uint32_t auth_failures;
    double hold_until; /* a delayed reply: no input to the protocol until then (0 = none) */
    bool hold_close;   /* close after the held reply */
    size_t hold_len;
    char hold_reply[384];
    struct session *dead_next; /* worker's list of sessions to finish and free */
    bool on_dead_list;
    struct dnscheck *dns;        /* dnscheck.c: this session's DNS checks, or NULL */
    struct cluster_lease *lease; /* cluster.c: this session's count in the fleet, or NULL */
};

/* session_events.c, for the worker */
struct session *session_new(struct session_env *e, int fd, const struct sockaddr *peer,
                            socklen_t peer_len, struct config *conf,
                            const struct config_listener *l, struct tls_ctx *tls);
void session_free(struct session *s);
/* Drain: say goodbye to sessions not in the middle of something; others finish first. */
void session_shutdown(struct session *s);
/* Close both legs, write the closing line, hand the memory to the loop for a later free. */
void session_finish(struct session *s);

/* session.c, for the worker: run a session that asked to be re-dispatched (env->kick) */
void session_kick_run(struct session *s);
/* session.c, for the events in session_events.c and the session's services */
void session_timer_arm(struct session *s);
bool session_in_preauth(const struct session *s);
void session_tls_started(struct session *s); /* the client's first handshake bytes arrived */
double session_last_activity(const struct session *s); /* client (and backend in the relay) */
void session_dispatch(struct session *s);              /* client input to the protocol */
void session_client_eof(struct session *s);
void session_close_if_done(struct session *s); /* after a half-close: close once nothing is owed */
void session_relay_pump(struct conn *from, struct conn *to);
void session_relay_from_client(struct session *s); /* and half-close the backend after EOF */
void session_relay_both(struct session *s);

/* backend.c */
void backend_connected(struct session *s);
/* session_auth.c: the timer's auth work (returns true if it acted); dropping a job when the
 * session ends. Its deadlines are s->auth_deadline and s->hold_until. */
bool session_auth_on_timer(struct session *s, double now);
void session_auth_cancel(struct session *s);

void backend_attempt_failed(struct session *s, const char *why);

/* In-process tests only (tests/fuzz/fuzz_session.c, which defines it): session_is_tls() is
 * true for every session, so the auth state machines are reachable without a TLS handshake.
 * A weak reference: the moat binary has no such variable at all (tests/integration/
 * test_packaging.py checks), so nothing in it can turn the switch on. */
extern bool session_test_assume_tls __attribute__((weak));

#endif
