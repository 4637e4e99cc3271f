/*
 * imap_internal.h: what the IMAP front's files share: the per-session state, the state enum and
 * the functions imap.c (pre-auth dialogue) and imap_backend.c (login and hand-off) call in each
 * other. Nothing outside protocols/imap*.c includes it.
 */
#ifndef MOAT_IMAP_INTERNAL_H
#define MOAT_IMAP_INTERNAL_H

#include "dialogue.h"
#include "imap_parse.h"
#include "protocols.h"

enum imap_state {
    IMAP_STATE_INIT = 0,
    IMAP_STATE_PREAUTH,          /* reading commands */
    IMAP_STATE_AUTHENTICATE,     /* reading a SASL response line */
    IMAP_STATE_STARTTLS,         /* handshake under way; no input */
    IMAP_STATE_VERIFY,           /* credentials with moat's auth service (verifier = sasl) */
    IMAP_STATE_CONNECT,          /* credentials taken, backend connecting */
    IMAP_STATE_BACKEND_GREETING, /* waiting for the backend's "* OK" */
    IMAP_STATE_BACKEND_ID,       /* waiting for "m1 OK" to moat's ID */
    IMAP_STATE_BACKEND_LOGIN,    /* waiting for the tagged reply to the replayed login */
    IMAP_STATE_RELAY,
    IMAP_STATE_LOGOUT
};

struct imap_session {
    enum imap_state state;
    char tag[IMAP_TAG_MAX + 1]; /* the current command's tag (validated) */
    size_t cont_done;           /* literal offset for which "+" was sent in this command */
    bool skip_line;             /* drop input up to the next LF */
    enum sasl_mech mech;        /* SASL_MECH_NONE for the LOGIN command */
    char user[SASL_USER_MAX + 1];
    struct sasl_exchange sasl; /* secrets: wiped as soon as they are sent */
};

struct imap_session *imap_session(struct session *s);
void imap_enter_state(struct session *s, enum imap_state st);
/* Its part in a SASL exchange (imap.c). */
extern const struct dialogue_sasl imap_sasl;
/* "tag text\r\n" with the current command's tag. */
void imap_reply_tagged(struct session *s, const char *text);

/* imap_backend.c: credentials are in sasl.cred, the tag in tag: verify them by logging in. */
void imap_login_start(struct session *s);
/* A mechanism the auth service runs (CRAM-MD5, SCRAM): its next step with sasl's response. */
void imap_auth_server_step(struct session *s);
void imap_backend_event(struct session *s, enum backend_event ev);
size_t imap_backend_input(struct session *s, const char *p, size_t n);
void imap_on_auth_done(struct session *s, const struct auth_result *r);

#endif
