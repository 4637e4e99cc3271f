/*
 * pop3_backend.c: the POP3 hand-off (reference §6.6): connect the backend, read its greeting,
 * tell it who the client is (XCLIENT, or the PROXY header the core already sent), replay the
 * login as AUTH PLAIN, forward its "+OK" and switch to the byte relay. Owns the login step of
 * pop3_session. It must never forward a backend byte before the login reply, tell the client why
 * a login failed, or keep a password after it has been sent.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "identity.h"
#include "log.h"
#include "pop3.h"

#define POP3_BACKEND_LINE_MAX 1024
#define POP3_REPLY_TEMP "-ERR [SYS/TEMP] Service temporarily unavailable\r\n"

static bool
pop3_reply_is(const char *p, size_t n, const char *status)
{
    size_t k = strlen(status);
    return n >= k && memcmp(p, status, k) == 0 && (n == k || p[k] == ' ');
}

/* The backend could not be used: a temporary failure to the client, back to pre-auth. */
static void
pop3_login_unavailable(struct session *s, const char *why)
{
    struct pop3_session *ps = session_proto_state(s);
    credentials_wipe(&ps->cred);
    session_log(s, LOG_WARN, EV_LOGIN_UNAVAILABLE, "why=\"%s\" backend=%s", why,
                session_backend_addr(s));
    session_backend_wait(s, false);
    session_backend_close(s);
    session_set_phase(s, PHASE_PREAUTH);
    pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
    pop3_fail(s, POP3_REPLY_TEMP);
    if (ps->state != POP3_STATE_DONE)
        session_input_resume(s);
}

/* The backend refused the login: the client learns nothing more than "failed". */
static void
pop3_login_rejected(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    session_backend_wait(s, false);
    session_backend_close(s);
    session_set_phase(s, PHASE_PREAUTH);
    pop3_auth_failed(s);
    if (ps->state != POP3_STATE_DONE)
        session_input_resume(s);
}

static void
pop3_send_xclient(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    struct identity_client c = {session_client_addr(s), session_client_port(s),
                                session_local_addr(s), session_local_port(s), session_id(s)};
    char line[IDENTITY_LINE_MAX];
    int n = identity_pop3_xclient(&c, line, sizeof(line));
    if (n > 0)
        session_backend_send(s, line, (size_t)n);
    ps->login_step = POP3_LOGIN_XCLIENT;
    session_backend_wait(s, true);
}

/* After a mechanism that carried no password: "<user><separator><master_user>" with the
 * backend's master password (Dovecot's auth_master_user_separator and master passdb). */
static int
pop3_master_credentials(struct session *s, struct credentials *c)
{
    const struct config_backend *b = session_listener(s)->backend;
    const struct pop3_session *ps = session_proto_state(s);
    char login[SASL_USER_MAX + 1];
    explicit_bzero(c, sizeof(*c));
    int n = snprintf(login, sizeof(login), "%s%s%s", ps->cred.user, b->master_separator,
                     b->master_user);
    if (b->master_password == NULL || n <= 0 || (size_t)n >= sizeof(login))
        return -1;
    return credentials_set(c, login, (size_t)n, b->master_password, strlen(b->master_password));
}

static void
pop3_send_auth(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    char b64[(SASL_USER_MAX + SASL_PASS_MAX + 2) / 3 * 4 + 16];
    int n = -1;
    if (sasl_mech_is_server(ps->mech)) {
        struct credentials master;
        if (pop3_master_credentials(s, &master) == 0)
            n = sasl_plain_encode(&master, b64, sizeof(b64));
        credentials_wipe(&master);
    } else {
        n = sasl_plain_encode(&ps->cred, b64, sizeof(b64));
    }
    /* keep the user name (not secret) for the log; the password goes now */
    explicit_bzero(ps->cred.pass, sizeof(ps->cred.pass));
    ps->cred.pass_len = 0;
    if (n < 0) {
        explicit_bzero(b64, sizeof(b64));
        pop3_login_unavailable(s, "encode");
        return;
    }
    session_backend_sendf(s, "AUTH PLAIN %.*s\r\n", n, b64);
    explicit_bzero(b64, sizeof(b64));
    ps->login_step = POP3_LOGIN_AUTH;
    session_backend_wait(s, true);
}

/* Login accepted: the relay starts with the backend's "+OK" line still buffered, so the client
 * gets it verbatim from the relay (session_relay forwards what is buffered). The line must not be
 * consumed here: the relay may already have sent it when session_relay() returns. */
static void
pop3_login_done(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    session_backend_wait(s, false);
    session_auth_login(s, ps->cred.user, ps->cred.user_len,
                       ps->mech == SASL_MECH_NONE ? "USER" : sasl_mech_name(ps->mech));
    session_log(s, LOG_INFO, EV_BACKEND_LOGIN, "backend=%s", session_backend_addr(s));
    credentials_wipe(&ps->cred);
    pop3_enter_state(s, POP3_STATE_RELAY);
    session_relay(s);
}

static void
pop3_login_connect(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    ps->login_step = POP3_LOGIN_CONNECT;
    pop3_enter_state(s, POP3_STATE_LOGIN);
    session_input_pause(s);
    session_backend_connect(s); /* may report BACKEND_FAILED before it returns */
}

void
pop3_login_start(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    if (session_listener(s)->auth_conf.verifier == VERIFIER_SASL) {
        ps->login_step = POP3_LOGIN_VERIFY;
        pop3_enter_state(s, POP3_STATE_LOGIN);
        session_set_phase(s, PHASE_AUTH);
        session_auth_verify(s, &ps->cred, ps->mech);
        return;
    }
    if (session_auth_banned(s, ps->cred.user, ps->cred.user_len)) {
        pop3_auth_failed(s);
        return;
    }
    pop3_login_connect(s);
}

void
pop3_auth_server_step(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    credentials_wipe(&ps->cred);
    ps->login_step = POP3_LOGIN_VERIFY;
    pop3_enter_state(s, POP3_STATE_LOGIN);
    session_set_phase(s, PHASE_AUTH);
    session_auth_step(s, &ps->sasl);
}

/* verifier = sasl: verified credentials are replayed to the backend, which logs the user in. */
void
pop3_on_auth_done(struct session *s, const struct auth_result *r)
{
    struct pop3_session *ps = session_proto_state(s);
    if (ps->state != POP3_STATE_LOGIN || ps->login_step != POP3_LOGIN_VERIFY)
        return;
    if (sasl_mech_is_server(ps->mech) && r->user != NULL && r->status != AUTH_CONTINUE)
        (void)credentials_set(&ps->cred, r->user, strlen(r->user), "", 0); /* the name only */
    switch (r->status) {
    case AUTH_OK:
        pop3_login_connect(s);
        return;
    case AUTH_FAILED:
        session_set_phase(s, PHASE_PREAUTH);
        pop3_auth_failed(s);
        return;
    case AUTH_CONTINUE:
        dialogue_sasl_challenge(s, &pop3_sasl, r->challenge);
        return;
    case AUTH_TEMPFAIL:
        pop3_login_unavailable(s, "verifier");
        return;
    }
}

void
pop3_on_backend(struct session *s, enum backend_event ev)
{
    struct pop3_session *ps = session_proto_state(s);
    if (ps->state != POP3_STATE_LOGIN)
        return;
    if (ev != BACKEND_CONNECTED) {
        pop3_login_unavailable(s, dialogue_backend_why(ev));
        return;
    }
    ps->login_step = POP3_LOGIN_GREETING;
    session_backend_wait(s, true);
}

/* One complete backend line; returns false when the line must not be consumed: the backend leg
 * was dropped (its buffer is gone) or the relay took over (it forwards the line). */
static bool
pop3_backend_line(struct session *s, const char *p, size_t len)
{
    struct pop3_session *ps = session_proto_state(s);
    bool ok = pop3_reply_is(p, len, "+OK");
    switch (ps->login_step) {
    case POP3_LOGIN_VERIFY:
    case POP3_LOGIN_CONNECT:
        pop3_login_unavailable(s, "early_reply");
        return false;
    case POP3_LOGIN_GREETING:
        if (!ok) {
            session_log_peer(s, LOG_WARN, EV_BACKEND_GREETING, "reply", p, len);
            pop3_login_unavailable(s, "greeting");
            return false;
        }
        if (session_listener(s)->backend->identity == IDENT_XCLIENT)
            pop3_send_xclient(s);
        else
            pop3_send_auth(s);
        return ps->state == POP3_STATE_LOGIN;
    case POP3_LOGIN_XCLIENT:
        if (!ok) {
            session_log_peer(s, LOG_WARN, EV_BACKEND_XCLIENT, "reply", p, len);
            pop3_login_unavailable(s, "xclient");
            return false;
        }
        if (!(len >= 11 && memcmp(p, "+OK Updated", 11) == 0))
            session_log_peer(s, LOG_WARN, EV_BACKEND_XCLIENT_IGNORED, "reply", p, len);
        pop3_send_auth(s);
        return ps->state == POP3_STATE_LOGIN;
    case POP3_LOGIN_AUTH:
        if (ok) {
            pop3_login_done(s);
            return false;
        }
        if (pop3_reply_is(p, len, "-ERR"))
            pop3_login_rejected(s);
        else
            pop3_login_unavailable(s, "auth_reply");
        return false;
    }
    return false;
}

size_t
pop3_on_backend_input(struct session *s, const char *p, size_t n)
{
    struct pop3_session *ps = session_proto_state(s);
    size_t len = 0, used = 0;
    bool crlf = false;
    if (ps->state != POP3_STATE_LOGIN)
        return n; /* nothing is expected: drop it */
    switch (buf_find_line(p, n, POP3_BACKEND_LINE_MAX, &len, &used, &crlf)) {
    case LINE_MORE:
        return 0;
    case LINE_TOO_LONG:
        pop3_login_unavailable(s, "long_reply");
        return 0;
    case LINE_OK:
        break;
    }
    return pop3_backend_line(s, p, len) ? used : 0;
}
