/*
 * fake_session.h: a fake of the core services of protocol.h for protocol unit tests. It records
 * what the protocol asked for (replies, backend bytes, STARTTLS, relay, close) and lets the test
 * feed client input, backend input and events. No sockets, no event loop.
 */
#ifndef MOAT_FAKE_SESSION_H
#define MOAT_FAKE_SESSION_H

#include "protocol.h"

#define FAKE_OUT_MAX (256 * 1024)

struct session {
    const struct protocol *proto;
    void *state;
    struct config conf;
    struct config_listener listener;
    struct config_backend backend;
    char client_in[65536];
    size_t client_in_len;
    char backend_in[65536];
    size_t backend_in_len;
    char client_out[FAKE_OUT_MAX];
    size_t client_out_len;
    char backend_out[FAKE_OUT_MAX];
    size_t backend_out_len;
    bool tls;
    bool starttls_requested;
    bool tls_busy; /* session_start_tls() answers START_TLS_BUSY (max_tls_handshakes) */
    bool relaying;
    bool backend_connect_requested;
    bool input_paused;
    bool backend_waiting;
    bool backend_closed; /* session_backend_close() was called */
    bool closed;
    enum close_reason close_reason;
    enum session_phase phase;
    char user[256];
    uint32_t errors;
    uint32_t preauth_commands;
    size_t discarded_at_starttls;
    uint32_t timer_ms;    /* session_timer_start() was called with this (0 = no timer) */
    bool refuse_messages; /* session_rate_allows(CLIENT_RATE_MESSAGES) says no */
    bool refuse_recipients;
    uint32_t counted_messages;
    uint32_t counted_recipients;
    /* auth services: no delay, no shared table */
    uint32_t auth_failures;
    bool auth_requested; /* session_auth_verify() called; answer with fake_auth_done() */
    char auth_user[256];
    enum sasl_mech auth_mech;
    bool banned;             /* what session_auth_banned() answers */
    unsigned auth_mechs;     /* what session_auth_mechs() answers (0: PLAIN LOGIN) */
    uint32_t auth_steps;     /* session_auth_step() calls; answer with fake_auth_done() */
    bool auth_step_has_resp; /* the last step's response */
    char auth_resp[256];
    bool auth_aborted; /* session_auth_abort() called */
    char login_mech[32];
    /* DNS checks: what the services answer (zero: pass, no name, no SPF header) */
    enum dns_verdict dns_verdict, spf_verdict;
    const char *dns_reply, *spf_reply, *spf_header, *client_name;
    char dns_helo[256];
    char spf_sender[320];
    /* URI lists: what session_uribl_verdict() answers (give_up turns PENDING into PASS) */
    enum dns_verdict uribl_verdict;
    const char *uribl_reply;
    uint32_t uribl_starts;
    size_t uribl_fed; /* content bytes given to session_uribl_feed() */
    bool uribl_gave_up;
};

/* A session for listener protocol p with TLS mode t, and the given backend identity. */
struct session *fake_session_new(const struct protocol *proto, enum listener_proto p,
                                 enum listener_tls t, enum backend_identity id);
void fake_session_free(struct session *s);
/* Start: implicit TLS listeners start with TLS up. Calls on_start. */
void fake_start(struct session *s);
/* Client sends bytes: appended to the input buffer, then dispatched like the core does. */
void fake_client_send(struct session *s, const char *p, size_t n);
void fake_client_sends(struct session *s, const char *text);
/* Complete a requested STARTTLS: buffered input is discarded, on_tls_ready called. */
void fake_tls_handshake_done(struct session *s);
void fake_backend_event(struct session *s, enum backend_event ev);
/* The protocol timer expires: on_timer is called. */
void fake_timer_fire(struct session *s);
void fake_backend_sends(struct session *s, const char *text);
/* Answer a session_auth_verify() request. */
void fake_auth_done(struct session *s, enum auth_status st, const char *user);
/* Answer a session_auth_step() with a challenge (AUTH_CONTINUE). */
void fake_auth_challenge(struct session *s, const char *challenge_b64);
/* The DNS checks finished: set the verdicts first, then this calls on_dns_done. */
void fake_dns_done(struct session *s);
/* Take (and clear) what was written to the client / backend, NUL-terminated. */
const char *fake_client_output(struct session *s);
const char *fake_backend_output(struct session *s);

#endif
