/*
 * imap_backend.c: the IMAP front's login and hand-off (reference §6.6): connect the backend,
 * check its greeting, tell it who the client is (ID, or the PROXY header the core sent), replay
 * the credentials as AUTHENTICATE PLAIN under the client's tag (after CRAM-MD5 / SCRAM, which
 * carry no password, as the Dovecot master user on the user's behalf), forward the tagged OK and
 * switch to the relay. It never forwards backend chatter from before the login, and it never lets
 * the client tell a wrong password from an unknown user or a backend outage from a hang.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "identity.h"
#include "imap_internal.h"
#include "log.h"

#define BACKEND_LINE_MAX 8192
#define ID_TAG "m1"

static void
back_to_preauth(struct session *s)
{
    struct imap_session *is = imap_session(s);
    sasl_exchange_wipe(&is->sasl);
    session_backend_close(s);
    session_set_phase(s, PHASE_PREAUTH);
    imap_enter_state(s, IMAP_STATE_PREAUTH);
    session_input_resume(s);
}

/* Backend down, slow or strange: a temporary failure, and the client may try again. */
static void
login_unavailable(struct session *s, const char *why)
{
    session_log(s, LOG_WARN, EV_BACKEND_LOGIN_UNAVAILABLE, "why=\"%s\"", why);
    imap_reply_tagged(s, "NO [UNAVAILABLE] Service temporarily unavailable.");
    back_to_preauth(s);
}

static const char *
mech_name(const struct imap_session *is)
{
    return is->mech == SASL_MECH_NONE ? "IMAP-LOGIN" : sasl_mech_name(is->mech);
}

/* The credentials were refused (by the backend or the verifier), or the user is banned: one
 * answer whatever the cause, delayed and counted by the core. */
static void
login_rejected(struct session *s)
{
    struct imap_session *is = imap_session(s);
    char reply[IMAP_TAG_MAX + 64], last[IMAP_TAG_MAX + 112];
    snprintf(reply, sizeof(reply), "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
             is->tag);
    snprintf(last, sizeof(last), "%s* BYE Too many authentication failures\r\n", reply);
    session_auth_failed(s, is->user, strlen(is->user), mech_name(is), reply, last);
    back_to_preauth(s);
}

static void
login_connect(struct session *s)
{
    imap_enter_state(s, IMAP_STATE_CONNECT);
    session_backend_connect(s); /* may report BACKEND_FAILED before it returns */
}

void
imap_login_start(struct session *s)
{
    struct imap_session *is = imap_session(s);
    memcpy(is->user, is->sasl.cred.user, is->sasl.cred.user_len + 1);
    session_input_pause(s);
    session_set_phase(s, PHASE_AUTH);
    if (session_listener(s)->auth_conf.verifier == VERIFIER_SASL) {
        imap_enter_state(s, IMAP_STATE_VERIFY);
        session_auth_verify(s, &is->sasl.cred, is->mech);
        return;
    }
    if (session_auth_banned(s, is->user, strlen(is->user))) {
        login_rejected(s);
        return;
    }
    login_connect(s);
}

void
imap_auth_server_step(struct session *s)
{
    struct imap_session *is = imap_session(s);
    is->user[0] = '\0'; /* known when the auth service says who it was */
    session_set_phase(s, PHASE_AUTH);
    imap_enter_state(s, IMAP_STATE_VERIFY);
    session_auth_step(s, &is->sasl);
}

/* The name the auth service reported, for mechanisms whose exchange moat does not parse. */
static void
note_user(struct imap_session *is, const char *user)
{
    if (sasl_mech_is_server(is->mech) && user != NULL)
        snprintf(is->user, sizeof(is->user), "%s", user);
}

/* verifier = sasl: verified credentials are replayed to the backend, which logs the user in. */
void
imap_on_auth_done(struct session *s, const struct auth_result *r)
{
    struct imap_session *is = imap_session(s);
    if (is->state != IMAP_STATE_VERIFY)
        return;
    session_input_pause(s);
    switch (r->status) {
    case AUTH_OK:
        note_user(is, r->user);
        login_connect(s);
        return;
    case AUTH_FAILED:
        note_user(is, r->user);
        login_rejected(s);
        return;
    case AUTH_CONTINUE:
        dialogue_sasl_challenge(s, &imap_sasl, r->challenge);
        session_input_resume(s);
        return;
    case AUTH_TEMPFAIL:
        login_unavailable(s, "verifier unavailable");
        return;
    }
}

static int
send_id(struct session *s)
{
    struct identity_client c = {session_client_addr(s), session_client_port(s),
                                session_local_addr(s), session_local_port(s), session_id(s)};
    char line[IDENTITY_LINE_MAX];
    int n = identity_imap_id(ID_TAG, &c, line, sizeof(line));
    return n < 0 ? -1 : session_backend_send(s, line, (size_t)n);
}

/* After a mechanism that carried no password: "<user><separator><master_user>" with the
 * backend's master password (Dovecot's auth_master_user_separator and master passdb). */
static int
master_credentials(struct session *s, struct credentials *c)
{
    const struct config_backend *b = session_listener(s)->backend;
    const struct imap_session *is = imap_session(s);
    char login[SASL_USER_MAX + 1];
    int n = snprintf(login, sizeof(login), "%s%s%s", is->user, b->master_separator, b->master_user);
    if (b->master_password == NULL || n <= 0 || (size_t)n >= sizeof(login))
        return -1;
    return credentials_set(c, login, (size_t)n, b->master_password, strlen(b->master_password));
}

/* Replay the credentials with SASL-IR under the client's tag, then forget them. */
static int
send_login(struct session *s)
{
    struct imap_session *is = imap_session(s);
    char b64[((SASL_USER_MAX + SASL_PASS_MAX + 2) / 3 + 2) * 4 + 1];
    if (sasl_mech_is_server(is->mech) && master_credentials(s, &is->sasl.cred) != 0)
        sasl_exchange_wipe(&is->sasl); /* an empty login: encoding fails, "unavailable" */
    int n = is->sasl.cred.user_len > 0 ? sasl_plain_encode(&is->sasl.cred, b64, sizeof(b64)) : -1;
    sasl_exchange_wipe(&is->sasl);
    int r = -1;
    if (n > 0)
        r = session_backend_sendf(s, "%s AUTHENTICATE PLAIN %.*s\r\n", is->tag, n, b64);
    explicit_bzero(b64, sizeof(b64));
    imap_enter_state(s, IMAP_STATE_BACKEND_LOGIN);
    return r;
}

void
imap_backend_event(struct session *s, enum backend_event ev)
{
    struct imap_session *is = imap_session(s);
    bool handing_off = is->state == IMAP_STATE_CONNECT ||
                       is->state == IMAP_STATE_BACKEND_GREETING ||
                       is->state == IMAP_STATE_BACKEND_ID || is->state == IMAP_STATE_BACKEND_LOGIN;
    if (!handing_off)
        return;
    if (ev != BACKEND_CONNECTED) {
        login_unavailable(s, dialogue_backend_why(ev));
        return;
    }
    if (is->state != IMAP_STATE_CONNECT)
        return;
    imap_enter_state(s, IMAP_STATE_BACKEND_GREETING);
    session_backend_wait(s, true);
}

static bool
starts_with(const char *p, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && strncasecmp(p, word, w) == 0;
}

/* "TAG OK", "TAG NO", "TAG BAD": 'O', 'N', 'B' if the line is tagged with tag, else 0. */
static char
tagged_status(const char *p, size_t n, const char *tag)
{
    size_t t = strlen(tag);
    if (n < t + 3 || memcmp(p, tag, t) != 0 || p[t] != ' ')
        return 0;
    p += t + 1;
    n -= t + 1;
    if (starts_with(p, n, "OK") && (n == 2 || p[2] == ' '))
        return 'O';
    if (starts_with(p, n, "NO") && (n == 2 || p[2] == ' '))
        return 'N';
    if (starts_with(p, n, "BAD") && (n == 3 || p[3] == ' '))
        return 'B';
    return 0;
}

static void
on_greeting(struct session *s, const char *line, size_t len)
{
    if (!starts_with(line, len, "* OK")) {
        login_unavailable(s, "unexpected greeting");
        return;
    }
    int r;
    if (session_listener(s)->backend->identity == IDENT_ID) {
        imap_enter_state(s, IMAP_STATE_BACKEND_ID);
        r = send_id(s);
    } else {
        r = send_login(s);
    }
    if (r != 0)
        login_unavailable(s, "backend write failed");
}

static void
on_id_reply(struct session *s, const char *line, size_t len)
{
    if (starts_with(line, len, "* "))
        return; /* "* ID (...)" */
    if (tagged_status(line, len, ID_TAG) != 'O') {
        login_unavailable(s, "ID refused");
        return;
    }
    if (send_login(s) != 0)
        login_unavailable(s, "backend write failed");
}

/* Returns true when the session switched to the relay (consume nothing then). */
static bool
on_login_reply(struct session *s, const char *line, size_t len)
{
    struct imap_session *is = imap_session(s);
    if (starts_with(line, len, "* "))
        return false; /* pre-login chatter is not the client's business */
    switch (tagged_status(line, len, is->tag)) {
    case 'O':
        /* The line stays unconsumed: the relay forwards it verbatim, with the backend's
         * CAPABILITY code, before anything else the backend sends. */
        session_auth_login(s, is->user, strlen(is->user), mech_name(is));
        imap_enter_state(s, IMAP_STATE_RELAY);
        session_relay(s);
        return true;
    case 'N':
    case 'B':
        login_rejected(s);
        return false;
    default:
        login_unavailable(s, "unexpected login reply");
        return false;
    }
}

size_t
imap_backend_input(struct session *s, const char *p, size_t n)
{
    struct imap_session *is = imap_session(s);
    size_t len = 0, used = 0;
    bool crlf = false;
    enum imap_state before = is->state;
    switch (buf_find_line(p, n, BACKEND_LINE_MAX, &len, &used, &crlf)) {
    case LINE_MORE:
        return 0;
    case LINE_TOO_LONG:
        login_unavailable(s, "backend line too long");
        return 0;
    case LINE_OK:
        break;
    }
    switch (before) {
    case IMAP_STATE_BACKEND_GREETING:
        on_greeting(s, p, len);
        break;
    case IMAP_STATE_BACKEND_ID:
        on_id_reply(s, p, len);
        break;
    case IMAP_STATE_BACKEND_LOGIN:
        if (on_login_reply(s, p, len))
            return 0;
        break;
    case IMAP_STATE_INIT:
    case IMAP_STATE_PREAUTH:
    case IMAP_STATE_AUTHENTICATE:
    case IMAP_STATE_STARTTLS:
    case IMAP_STATE_VERIFY:
    case IMAP_STATE_CONNECT:
    case IMAP_STATE_RELAY:
    case IMAP_STATE_LOGOUT:
        login_unavailable(s, "unexpected backend data");
        return 0;
    }
    /* Once the backend leg was dropped its buffer is gone: consume nothing. */
    if (is->state == IMAP_STATE_PREAUTH)
        return 0;
    return used;
}
