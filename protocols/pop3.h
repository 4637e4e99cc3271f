/*
 * pop3.h: what the POP3 front's files share: the per-session state, its states, and the hand-off
 * entry points of pop3_backend.c. Internal to protocols/pop3*.c; the core sees only
 * pop3_protocol (protocols.h). Credentials live here only between the client's last line and the
 * backend login, and are wiped right after.
 */
#ifndef MOAT_POP3_H
#define MOAT_POP3_H

#include "dialogue.h"
#include "protocol.h"

enum pop3_state {
    POP3_STATE_AUTHORIZATION = 0, /* pre-auth commands */
    POP3_STATE_USER,              /* USER given, PASS expected */
    POP3_STATE_SASL,              /* inside an AUTH exchange: lines are SASL responses */
    POP3_STATE_STARTTLS,          /* STLS accepted, waiting for the handshake */
    POP3_STATE_LOGIN,             /* logging in to the backend */
    POP3_STATE_RELAY,             /* byte relay */
    POP3_STATE_DONE               /* QUIT or a fatal error: no more input */
};

/* Steps of the backend login (POP3_STATE_LOGIN). */
enum pop3_login_step {
    POP3_LOGIN_CONNECT = 0, /* waiting for BACKEND_CONNECTED */
    POP3_LOGIN_VERIFY,      /* moat's auth service checks the credentials (verifier = sasl) */
    POP3_LOGIN_GREETING,    /* waiting for "+OK ..." */
    POP3_LOGIN_XCLIENT,     /* XCLIENT sent */
    POP3_LOGIN_AUTH         /* AUTH PLAIN sent */
};

struct pop3_session {
    enum pop3_state state;
    enum pop3_login_step login_step;
    bool discarding;              /* an over-long line is being skipped up to its LF */
    char user[SASL_USER_MAX + 1]; /* from USER, until PASS */
    size_t user_len;
    struct sasl_exchange sasl;
    struct credentials cred; /* for the backend login; wiped once sent */
    enum sasl_mech mech;     /* for the log */
};

void pop3_enter_state(struct session *s, enum pop3_state to);
/* Its part in a SASL exchange (pop3.c). */
extern const struct dialogue_sasl pop3_sasl;
/* Reply with an error and count it; on max_errors say so and close instead. */
void pop3_fail(struct session *s, const char *reply);
/* A login failed (bad credentials or the backend said no): the same reply whatever the cause;
 * closes after max_failures. Back to POP3_STATE_AUTHORIZATION otherwise. */
void pop3_auth_failed(struct session *s);

/* pop3_backend.c: log in with p->cred (already filled) and hand off. */
void pop3_login_start(struct session *s);
/* A mechanism the auth service runs (CRAM-MD5, SCRAM): its next step with p->sasl's response. */
void pop3_auth_server_step(struct session *s);
void pop3_on_backend(struct session *s, enum backend_event ev);
size_t pop3_on_backend_input(struct session *s, const char *p, size_t n);
void pop3_on_auth_done(struct session *s, const struct auth_result *r);

#endif
