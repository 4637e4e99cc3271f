/*
 * pop3.c: the POP3 front before login (RFC 1939, 2449, 2595, 5034): greeting, CAPA, STLS,
 * USER/PASS, AUTH PLAIN/LOGIN, NOOP, QUIT, through a command table and one pop3_enter_state().
 * Owns the session's pop3_session; the backend login is pop3_backend.c. It must never accept
 * anything that carries a password without TLS, answer a byte that arrived before STLS inside
 * TLS, or log a password.
 */
#include <string.h>

#include "crossproto.h"
#include "dialogue.h"
#include "log.h"
#include "pop3.h"
#include "pop3_parse.h"
#include "protocols.h"

#define POP3_REPLY_PLAINTEXT                                                                       \
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n"
#define POP3_REPLY_AUTH_FAILED "-ERR [AUTH] Authentication failed.\r\n"

#define PREAUTH_STATES (DIALOGUE_IN(POP3_STATE_AUTHORIZATION) | DIALOGUE_IN(POP3_STATE_USER))

static const char *const state_names[] = {
    [POP3_STATE_AUTHORIZATION] = "authorization",
    [POP3_STATE_USER] = "user",
    [POP3_STATE_SASL] = "sasl",
    [POP3_STATE_STARTTLS] = "starttls",
    [POP3_STATE_LOGIN] = "login",
    [POP3_STATE_RELAY] = "relay",
    [POP3_STATE_DONE] = "done",
};
static const struct dialogue_states pop3_states = {state_names, ARRAY_SIZE(state_names),
                                                   EV_POP3_STATE};

void
pop3_enter_state(struct session *s, enum pop3_state to)
{
    struct pop3_session *ps = session_proto_state(s);
    dialogue_state_change(s, &pop3_states, ps->state, to);
    ps->state = to;
}

void
pop3_fail(struct session *s, const char *reply)
{
    if (session_count_error(s)) {
        session_reply(s, "-ERR Too many errors\r\n", 22);
        pop3_enter_state(s, POP3_STATE_DONE);
        session_close(s, REASON_TOO_MANY_ERRORS);
        return;
    }
    session_reply(s, reply, strlen(reply));
}

static void
pop3_send(struct session *s, const char *reply)
{
    session_reply(s, reply, strlen(reply));
}

static bool
pop3_stls_offered(struct session *s)
{
    return !session_is_tls(s) && session_listener(s)->tls == LTLS_STARTTLS;
}

static int
pop3_cmd_capa(struct session *s, const struct dialogue_call *call)
{
    pop3_send(s, "+OK\r\n");
    if (pop3_stls_offered(s))
        pop3_send(s, "STLS\r\n");
    char mechs[128];
    if (dialogue_secure(s) &&
        sasl_mechs_format(session_auth_mechs(s), " ", mechs, sizeof(mechs)) >= 0)
        session_replyf(s, "USER\r\nSASL%s\r\n", mechs);
    pop3_send(s, "RESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n");
    return 0;
}

static int
pop3_cmd_stls(struct session *s, const struct dialogue_call *call)
{
    if (!pop3_stls_offered(s)) {
        pop3_fail(s, session_is_tls(s) ? "-ERR TLS already active\r\n"
                                       : "-ERR STLS not available\r\n");
        return 0;
    }
    switch (session_start_tls(s)) {
    case START_TLS_OK:
        pop3_send(s, "+OK Begin TLS negotiation\r\n");
        pop3_enter_state(s, POP3_STATE_STARTTLS);
        break;
    case START_TLS_BUSY:
        pop3_send(s, "-ERR [SYS/TEMP] TLS not available due to temporary reason\r\n");
        break;
    case START_TLS_UNAVAILABLE:
        pop3_send(s, "-ERR [SYS/TEMP] TLS not available\r\n");
        pop3_enter_state(s, POP3_STATE_DONE);
        session_close(s, REASON_INTERNAL);
        break;
    }
    return 0;
}

static int
pop3_cmd_noop(struct session *s, const struct dialogue_call *call)
{
    pop3_send(s, "+OK\r\n");
    return 0;
}

static int
pop3_cmd_quit(struct session *s, const struct dialogue_call *call)
{
    pop3_send(s, "+OK Bye\r\n");
    pop3_enter_state(s, POP3_STATE_DONE);
    session_close(s, REASON_CLIENT_QUIT);
    return 0;
}

static int
pop3_cmd_user(struct session *s, const struct dialogue_call *call)
{
    struct pop3_session *ps = call->st;
    const struct pop3_command *c = call->cmd;
    size_t n = c->args_len;
    while (n > 0 && c->args[n - 1] == ' ')
        n--;
    explicit_bzero(ps->user, sizeof(ps->user));
    ps->user_len = 0;
    if (n == 0 || n > SASL_USER_MAX) {
        pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
        pop3_fail(s, n == 0 ? "-ERR Missing user name\r\n" : "-ERR User name too long\r\n");
        return 0;
    }
    memcpy(ps->user, c->args, n);
    ps->user_len = n;
    pop3_send(s, "+OK\r\n");
    pop3_enter_state(s, POP3_STATE_USER);
    return 0;
}

/* A login that failed before or at the backend: the same words whatever the cause. */
void
pop3_auth_failed(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
    session_auth_failed(s, ps->cred.user, ps->cred.user_len,
                        ps->mech == SASL_MECH_NONE ? "USER" : sasl_mech_name(ps->mech),
                        POP3_REPLY_AUTH_FAILED, "-ERR [AUTH] Too many authentication failures\r\n");
    credentials_wipe(&ps->cred);
}

static int
pop3_cmd_pass(struct session *s, const struct dialogue_call *call)
{
    struct pop3_session *ps = call->st;
    const struct pop3_command *c = call->cmd;
    int rc = credentials_set(&ps->cred, ps->user, ps->user_len, c->args, c->args_len);
    explicit_bzero(ps->user, sizeof(ps->user));
    ps->user_len = 0;
    pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
    if (rc != 0 || c->args_len == 0) {
        ps->mech = SASL_MECH_NONE;
        pop3_auth_failed(s);
        return 0;
    }
    ps->mech = SASL_MECH_NONE;
    pop3_login_start(s);
    return 0;
}

static void
sasl_await(struct session *s)
{
    pop3_enter_state(s, POP3_STATE_SASL);
}

static void
sasl_credentials(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    ps->cred = ps->sasl.cred;
    sasl_exchange_wipe(&ps->sasl);
    pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
    pop3_login_start(s);
}

static void
sasl_ended(struct session *s, bool bad)
{
    pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
    if (bad)
        pop3_fail(s, "-ERR [AUTH] Invalid authentication data\r\n");
    else
        pop3_send(s, "-ERR Authentication cancelled\r\n");
}

const struct dialogue_sasl pop3_sasl = {
    .challenge = "+ ",
    .await = sasl_await,
    .credentials = sasl_credentials,
    .server_step = pop3_auth_server_step,
    .ended = sasl_ended,
};

static int
pop3_cmd_auth(struct session *s, const struct dialogue_call *call)
{
    struct pop3_session *ps = call->st;
    const struct pop3_command *c = call->cmd;
    struct pop3_line mech, ir;
    explicit_bzero(ps->user, sizeof(ps->user));
    ps->user_len = 0;
    pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
    unsigned offered = session_auth_mechs(s);
    if (!pop3_split_word(c->args, c->args_len, &mech, &ir)) {
        pop3_send(s, "+OK\r\n");
        for (int k = SASL_MECH_PLAIN; k < SASL_MECH_COUNT; k++) {
            if (offered & SASL_MECH_BIT(k))
                session_replyf(s, "%s\r\n", sasl_mech_name((enum sasl_mech)k));
        }
        pop3_send(s, ".\r\n");
        return 0;
    }
    enum sasl_mech m = sasl_mech_parse(mech.p, mech.len);
    if (m == SASL_MECH_NONE || !(offered & SASL_MECH_BIT(m))) {
        pop3_fail(s, "-ERR Unsupported authentication mechanism\r\n");
        return 0;
    }
    ps->mech = m;
    dialogue_sasl_start(s, &pop3_sasl, &ps->sasl, m, ir.p, ir.len);
    return 0;
}

static const struct dialogue_command pop3_verbs[] = {
    {POP3_CMD_CAPA, NULL, PREAUTH_STATES, 0, pop3_cmd_capa},
    {POP3_CMD_STLS, NULL, PREAUTH_STATES, 0, pop3_cmd_stls},
    {POP3_CMD_USER, NULL, PREAUTH_STATES, DIALOGUE_SECRET, pop3_cmd_user},
    {POP3_CMD_PASS, NULL, DIALOGUE_IN(POP3_STATE_USER), DIALOGUE_SECRET, pop3_cmd_pass},
    {POP3_CMD_AUTH, NULL, PREAUTH_STATES, DIALOGUE_SECRET, pop3_cmd_auth},
    {POP3_CMD_QUIT, NULL, PREAUTH_STATES, 0, pop3_cmd_quit},
    {POP3_CMD_NOOP, NULL, PREAUTH_STATES, 0, pop3_cmd_noop},
    {POP3_CMD_APOP, NULL, 0, 0, NULL},
    {POP3_CMD_STAT, NULL, 0, 0, NULL},
    {POP3_CMD_LIST, NULL, 0, 0, NULL},
    {POP3_CMD_RETR, NULL, 0, 0, NULL},
    {POP3_CMD_DELE, NULL, 0, 0, NULL},
    {POP3_CMD_RSET, NULL, 0, 0, NULL},
    {POP3_CMD_TOP, NULL, 0, 0, NULL},
    {POP3_CMD_UIDL, NULL, 0, 0, NULL},
    {POP3_CMD_LAST, NULL, 0, 0, NULL},
};

static void
pop3_dispatch(struct session *s, struct pop3_session *ps, const struct pop3_command *c)
{
    const struct dialogue_command *v = NULL;
    switch (
        dialogue_find(s, pop3_verbs, ARRAY_SIZE(pop3_verbs), (int)c->cmd, NULL, 0, ps->state, &v)) {
    case DIALOGUE_RUN:
        v->handler(s, &(struct dialogue_call){.st = ps, .cmd = c});
        return;
    case DIALOGUE_UNKNOWN:
        session_log_peer(s, LOG_DEBUG, EV_POP3_UNKNOWN, "command", c->keyword, c->keyword_len);
        pop3_fail(s, "-ERR Unknown command\r\n");
        return;
    case DIALOGUE_NEEDS_TLS:
        pop3_fail(s, POP3_REPLY_PLAINTEXT);
        return;
    case DIALOGUE_NOT_HERE:
        pop3_fail(s, c->cmd == POP3_CMD_APOP ? "-ERR APOP not supported\r\n"
                                             : "-ERR Not authenticated\r\n");
        return;
    case DIALOGUE_OUT_OF_SEQUENCE:
        pop3_fail(s, "-ERR No user name given\r\n");
        return;
    }
}

static size_t
pop3_discard(struct pop3_session *ps, const char *p, size_t n)
{
    const char *lf = memchr(p, '\n', n);
    if (lf == NULL)
        return n;
    ps->discarding = false;
    return (size_t)(lf - p) + 1;
}

static bool
pop3_count_command(struct session *s, struct pop3_session *ps)
{
    if (!session_count_command(s))
        return true;
    pop3_send(s, "-ERR Too many commands\r\n");
    pop3_enter_state(s, POP3_STATE_DONE);
    session_close(s, REASON_TOO_MANY_COMMANDS);
    return false;
}

static size_t
pop3_input_command(struct session *s, struct pop3_session *ps, const char *p, size_t n)
{
    struct pop3_line line;
    struct pop3_command c;
    size_t used = 0;
    const char *err = NULL;
    if (crossproto_http(p, n)) { /* never answer (and so reflect) another protocol's lines */
        session_log(s, LOG_INFO, EV_REFUSED, "reason=cross_protocol kind=http");
        pop3_send(s, "-ERR This is a POP3 server\r\n");
        pop3_enter_state(s, POP3_STATE_DONE);
        session_close(s, REASON_PROTOCOL_ERROR);
        return n;
    }
    switch (pop3_take_line(p, n, POP3_LINE_MAX, &line, &used, &err)) {
    case POP3_PARSE_MORE:
        return 0;
    case POP3_PARSE_TOO_LONG:
        ps->discarding = true;
        pop3_fail(s, "-ERR Line too long\r\n");
        return used;
    case POP3_PARSE_BAD:
        if (pop3_count_command(s, ps))
            pop3_fail(s, "-ERR Invalid characters in command\r\n");
        return used;
    case POP3_PARSE_OK:
        break;
    }
    if (!pop3_count_command(s, ps))
        return used;
    if (pop3_parse_command(&line, &c, &err) != POP3_PARSE_OK) {
        pop3_fail(s, "-ERR Unknown command\r\n");
        return used;
    }
    pop3_dispatch(s, ps, &c);
    return used;
}

static size_t
pop3_input_sasl(struct session *s, struct pop3_session *ps, const char *p, size_t n)
{
    struct pop3_line line;
    size_t used = 0;
    const char *err = NULL;
    switch (pop3_take_line(p, n, POP3_SASL_LINE_MAX, &line, &used, &err)) {
    case POP3_PARSE_MORE:
        return 0;
    case POP3_PARSE_TOO_LONG:
        ps->discarding = true;
        session_auth_abort(s);
        sasl_exchange_wipe(&ps->sasl);
        pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
        pop3_fail(s, "-ERR Line too long\r\n");
        return used;
    case POP3_PARSE_BAD:
        session_auth_abort(s);
        sasl_exchange_wipe(&ps->sasl);
        pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
        pop3_fail(s, "-ERR [AUTH] Invalid authentication data\r\n");
        return used;
    case POP3_PARSE_OK:
        break;
    }
    dialogue_sasl_step(s, &pop3_sasl, &ps->sasl, line.p, line.len);
    return used;
}

static size_t
pop3_on_client_input(struct session *s, const char *p, size_t n)
{
    struct pop3_session *ps = session_proto_state(s);
    if (ps->discarding)
        return pop3_discard(ps, p, n);
    switch (ps->state) {
    case POP3_STATE_AUTHORIZATION:
    case POP3_STATE_USER:
        return pop3_input_command(s, ps, p, n);
    case POP3_STATE_SASL:
        return pop3_input_sasl(s, ps, p, n);
    case POP3_STATE_STARTTLS:
    case POP3_STATE_LOGIN:
    case POP3_STATE_RELAY:
    case POP3_STATE_DONE:
        break;
    }
    session_input_pause(s);
    return 0;
}

static void
pop3_on_start(struct session *s)
{
    session_replyf(s, "+OK %s ready.\r\n", session_config(s)->hostname);
}

static void
pop3_on_tls_ready(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    enum pop3_state old = ps->state;
    sasl_exchange_wipe(&ps->sasl);
    explicit_bzero(ps, sizeof(*ps));
    ps->state = old;
    pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
}

static void
pop3_farewell(struct session *s, enum close_reason r)
{
    switch (close_reason_farewell(r)) {
    case FAREWELL_TIMEOUT:
        pop3_send(s, "-ERR [SYS/TEMP] Autologout; idle for too long\r\n");
        return;
    case FAREWELL_SHUTDOWN:
        pop3_send(s, "-ERR [SYS/TEMP] Server shutting down\r\n");
        return;
    case FAREWELL_UNAVAILABLE:
        pop3_send(s, "-ERR [SYS/TEMP] Service temporarily unavailable\r\n");
        return;
    case FAREWELL_POLICY:
    case FAREWELL_PROTOCOL:
        pop3_send(s, "-ERR [SYS/TEMP] Connection closed\r\n");
        return;
    case FAREWELL_NONE:
        return;
    }
}

static void
pop3_on_close(struct session *s)
{
    struct pop3_session *ps = session_proto_state(s);
    if (ps != NULL) {
        sasl_exchange_wipe(&ps->sasl);
        explicit_bzero(ps, sizeof(*ps));
    }
}

static const char *
pop3_proto_state_name(const struct session *s)
{
    const struct pop3_session *ps = session_proto_state((struct session *)s);
    return dialogue_state_name(&pop3_states, ps->state);
}

const struct protocol pop3_protocol = {
    .name = "pop3",
    .state_size = sizeof(struct pop3_session),
    .alpn = "pop3",
    .sasl_service = "pop",
    .relay_idle_ms = 10u * 60u * 1000u, /* RFC 1939 §3: at least 10 minutes */
    .refusals = {.busy = "-ERR [SYS/TEMP] ", .denied = "-ERR "},
    .handoff = HANDOFF_MASTER_USER,
    .on_start = pop3_on_start,
    .on_client_input = pop3_on_client_input,
    .on_tls_ready = pop3_on_tls_ready,
    .on_backend = pop3_on_backend,
    .on_backend_input = pop3_on_backend_input,
    .farewell = pop3_farewell,
    .on_close = pop3_on_close,
    .state_name = pop3_proto_state_name,
    .on_auth_done = pop3_on_auth_done,
};
