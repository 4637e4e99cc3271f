/*
 * dialogue.h: the kit the three dialogues before login (SMTP, IMAP, POP3) share, so each
 * protocol says only its own words: one shape of command table with its policy (the states a
 * command is accepted in, whether it carries a secret), one SASL step handler, the log line of
 * a state change from the protocol's names, and one meaning of a lost backend. The counts
 * (commands before login, errors, failed logins) are the core's (protocol.h), so STARTTLS,
 * which makes a protocol forget what the client said, cannot reset them.
 */
#ifndef MOAT_DIALOGUE_H
#define MOAT_DIALOGUE_H

#include "protocol.h"

/* --- states --- */

/* A protocol's states: names by its state enum, and the event of its state-change lines. */
struct dialogue_states {
    const char *const *names;
    size_t n;
    enum log_event event;
};

const char *dialogue_state_name(const struct dialogue_states *d, unsigned st);
/* The debug line event=<d->event> from= to=, when the state changes. */
void dialogue_state_change(struct session *s, const struct dialogue_states *d, unsigned from,
                           unsigned to);

/* --- commands --- */

#define DIALOGUE_IN(state) (1u << (state))
/* Carries or leads to a password: refused unless TLS is up and the listener offers logins. */
#define DIALOGUE_SECRET (1u << 0)

/* What a handler is given: the protocol's session state, its parsed command, the raw line. */
struct dialogue_call {
    void *st;
    const void *cmd;
    const char *line;
    size_t len;
};
typedef int dialogue_handler(struct session *s, const struct dialogue_call *c);

/* One command of a dialogue: matched by the parser's verb, or by name (case-insensitive) when
 * name is set. */
struct dialogue_command {
    int verb;
    const char *name;
    unsigned states;           /* DIALOGUE_IN() of the states it is accepted in */
    unsigned flags;            /* DIALOGUE_SECRET */
    dialogue_handler *handler; /* NULL: known, but not served before login */
};

enum dialogue_verdict {
    DIALOGUE_RUN = 0,         /* call the command's handler */
    DIALOGUE_UNKNOWN,         /* not in the table */
    DIALOGUE_NEEDS_TLS,       /* a secret without TLS, or where no logins are offered */
    DIALOGUE_NOT_HERE,        /* known, but not served before login */
    DIALOGUE_OUT_OF_SEQUENCE, /* not in this state */
};

/* The command of table t (n rows) for verb, or for name (len bytes) when name != NULL, and what
 * its policy says in state, checked in that order: known, secret, served, in sequence. *out is
 * the row (NULL when unknown). */
enum dialogue_verdict dialogue_find(struct session *s, const struct dialogue_command *t, size_t n,
                                    int verb, const char *name, size_t len, unsigned state,
                                    const struct dialogue_command **out);
/* Whether this session may carry credentials: TLS up and logins offered on the listener. */
bool dialogue_secure(struct session *s);

/* --- SASL --- */

/* A protocol's part in an AUTH exchange. */
struct dialogue_sasl {
    const char *challenge; /* how a challenge line starts: "334 ", "+ " */
    /* A challenge went out: read the client's response line next. */
    void (*await)(struct session *s);
    /* The credentials are complete (in the exchange): verify them. */
    void (*credentials)(struct session *s);
    /* The auth service runs the mechanism (CRAM-MD5, SCRAM): its next step. */
    void (*server_step)(struct session *s);
    /* The client cancelled ("*", bad false) or sent what does not decode (bad true): the
     * exchange is already dropped; back to commands, with the protocol's reply. */
    void (*ended)(struct session *s, bool bad);
};

/* AUTH <mechanism> [initial response]: start x for m and take its first step (the initial
 * response when ir_len > 0, else the server's or moat's first challenge). */
void dialogue_sasl_start(struct session *s, const struct dialogue_sasl *d, struct sasl_exchange *x,
                         enum sasl_mech m, const char *ir, size_t ir_len);
/* Drop the exchange (the auth service's job too) and go back to commands (d->ended). */
void dialogue_sasl_end(struct session *s, const struct dialogue_sasl *d, struct sasl_exchange *x,
                       bool bad);
/* One response line of the client (p, n bytes). */
void dialogue_sasl_step(struct session *s, const struct dialogue_sasl *d, struct sasl_exchange *x,
                        const char *p, size_t n);
/* The auth service sent a challenge (AUTH_CONTINUE): pass it on, and await the response. */
void dialogue_sasl_challenge(struct session *s, const struct dialogue_sasl *d,
                             const char *challenge);

/* --- the backend --- */

/* A backend lost before the relay: what the login-unavailable line says, and the reason a
 * session closes for when it cannot go on without it. */
const char *dialogue_backend_why(enum backend_event ev);
enum close_reason dialogue_backend_reason(enum backend_event ev);

#endif
