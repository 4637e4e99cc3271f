/*
 * dialogue.c: the kit the three dialogues before login share (see dialogue.h). It uses only the
 * session services of protocol.h and writes no reply of its own except a SASL challenge in the
 * prefix the protocol gave.
 */
#include <string.h>
#include <strings.h>

#include "dialogue.h"
#include "log.h"

const char *
dialogue_state_name(const struct dialogue_states *d, unsigned st)
{
    return st < d->n && d->names[st] != NULL ? d->names[st] : "?";
}

void
dialogue_state_change(struct session *s, const struct dialogue_states *d, unsigned from,
                      unsigned to)
{
    if (from != to)
        session_log(s, LOG_DEBUG, d->event, "from=%s to=%s", dialogue_state_name(d, from),
                    dialogue_state_name(d, to));
}

bool
dialogue_secure(struct session *s)
{
    return session_is_tls(s) && session_listener(s)->auth;
}

enum dialogue_verdict
dialogue_find(struct session *s, const struct dialogue_command *t, size_t n, int verb,
              const char *name, size_t len, unsigned state, const struct dialogue_command **out)
{
    const struct dialogue_command *c = NULL;
    for (size_t i = 0; i < n && c == NULL; i++) {
        if (name == NULL ? t[i].verb == verb
                         : strlen(t[i].name) == len && strncasecmp(t[i].name, name, len) == 0)
            c = &t[i];
    }
    *out = c;
    if (c == NULL)
        return DIALOGUE_UNKNOWN;
    if ((c->flags & DIALOGUE_SECRET) && !dialogue_secure(s))
        return DIALOGUE_NEEDS_TLS;
    if (c->handler == NULL)
        return DIALOGUE_NOT_HERE;
    if ((c->states & DIALOGUE_IN(state)) == 0)
        return DIALOGUE_OUT_OF_SEQUENCE;
    return DIALOGUE_RUN;
}

static void
sasl_result(struct session *s, const struct dialogue_sasl *d, struct sasl_exchange *x,
            enum sasl_step r, const char *challenge)
{
    switch (r) {
    case SASL_STEP_CONTINUE:
        session_reply_line(s, d->challenge, challenge, strlen(challenge));
        d->await(s);
        return;
    case SASL_STEP_DONE:
        d->credentials(s);
        return;
    case SASL_STEP_SERVER:
        d->server_step(s);
        return;
    case SASL_STEP_CANCEL:
    case SASL_STEP_BAD:
        dialogue_sasl_end(s, d, x, r == SASL_STEP_BAD);
        return;
    }
}

void
dialogue_sasl_end(struct session *s, const struct dialogue_sasl *d, struct sasl_exchange *x,
                  bool bad)
{
    session_auth_abort(s);
    sasl_exchange_wipe(x);
    d->ended(s, bad);
}

void
dialogue_sasl_start(struct session *s, const struct dialogue_sasl *d, struct sasl_exchange *x,
                    enum sasl_mech m, const char *ir, size_t ir_len)
{
    sasl_exchange_start(x, m);
    if (ir_len > 0) {
        dialogue_sasl_step(s, d, x, ir, ir_len);
        return;
    }
    if (sasl_mech_is_server(m)) {
        d->server_step(s); /* no initial response: the server's first challenge */
        return;
    }
    sasl_result(s, d, x, SASL_STEP_CONTINUE, sasl_exchange_first_challenge(x));
}

void
dialogue_sasl_step(struct session *s, const struct dialogue_sasl *d, struct sasl_exchange *x,
                   const char *p, size_t n)
{
    const char *challenge = "";
    enum sasl_step r = sasl_exchange_step(x, p, n, &challenge);
    sasl_result(s, d, x, r, challenge != NULL ? challenge : "");
}

void
dialogue_sasl_challenge(struct session *s, const struct dialogue_sasl *d, const char *challenge)
{
    session_set_phase(s, PHASE_PREAUTH);
    session_reply_line(s, d->challenge, challenge != NULL ? challenge : "",
                       challenge != NULL ? strlen(challenge) : 0);
    d->await(s);
}

const char *
dialogue_backend_why(enum backend_event ev)
{
    switch (ev) {
    case BACKEND_CONNECTED:
        break;
    case BACKEND_FAILED:
        return "connect failed";
    case BACKEND_EOF:
        return "backend closed";
    case BACKEND_ERROR:
        return "backend error";
    case BACKEND_TIMEOUT:
        return "backend timeout";
    }
    return "connected";
}

enum close_reason
dialogue_backend_reason(enum backend_event ev)
{
    switch (ev) {
    case BACKEND_CONNECTED:
        break;
    case BACKEND_FAILED:
        return REASON_BACKEND_UNAVAILABLE;
    case BACKEND_EOF:
        return REASON_BACKEND_EOF;
    case BACKEND_ERROR:
        return REASON_BACKEND_ERROR;
    case BACKEND_TIMEOUT:
        return REASON_BACKEND_TIMEOUT;
    }
    return REASON_NONE;
}
