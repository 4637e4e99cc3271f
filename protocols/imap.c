/*
 * imap.c: the IMAP front's pre-auth dialogue (RFC 9051/3501): greeting, CAPABILITY, NOOP,
 * LOGOUT, ID, STARTTLS, LOGIN and AUTHENTICATE (PLAIN, LOGIN, SASL-IR), everything else BAD.
 * It owns the session's IMAP state; the login and hand-off live in imap_backend.c. It must never
 * take credentials without TLS, echo an invalid tag, or promise a literal it would refuse.
 */
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "crossproto.h"
#include "imap_internal.h"
#include "log.h"

#define CAPS_BASE "IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL-"

struct imap_session *
imap_session(struct session *s)
{
    return session_proto_state(s);
}

static const char *const state_names[] = {
    [IMAP_STATE_INIT] = "init",
    [IMAP_STATE_PREAUTH] = "preauth",
    [IMAP_STATE_AUTHENTICATE] = "authenticate",
    [IMAP_STATE_STARTTLS] = "starttls",
    [IMAP_STATE_VERIFY] = "verify",
    [IMAP_STATE_CONNECT] = "connect",
    [IMAP_STATE_BACKEND_GREETING] = "backend_greeting",
    [IMAP_STATE_BACKEND_ID] = "backend_id",
    [IMAP_STATE_BACKEND_LOGIN] = "backend_login",
    [IMAP_STATE_RELAY] = "relay",
    [IMAP_STATE_LOGOUT] = "logout",
};
static const struct dialogue_states imap_states = {state_names, ARRAY_SIZE(state_names),
                                                   EV_IMAP_STATE};

void
imap_enter_state(struct session *s, enum imap_state st)
{
    struct imap_session *is = imap_session(s);
    dialogue_state_change(s, &imap_states, is->state, st);
    is->state = st;
}

void
imap_reply_tagged(struct session *s, const char *text)
{
    session_replyf(s, "%s %s\r\n", imap_session(s)->tag, text);
}

static bool
starttls_offered(struct session *s)
{
    return !session_is_tls(s) && session_listener(s)->tls == LTLS_STARTTLS;
}

#define CAPS_MAX 256

/* The capability list, in caps (CAPS_MAX bytes). */
static const char *
imap_caps(struct session *s, char *caps)
{
    if (dialogue_secure(s)) {
        size_t n = strlen(CAPS_BASE);
        memcpy(caps, CAPS_BASE, n + 1);
        if (sasl_mechs_format(session_auth_mechs(s), " AUTH=", caps + n, CAPS_MAX - n) < 0)
            caps[n] = '\0';
        return caps;
    }
    if (starttls_offered(s))
        return CAPS_BASE " STARTTLS LOGINDISABLED";
    return CAPS_BASE " LOGINDISABLED";
}

static void
imap_too_many_errors(struct session *s)
{
    session_reply(s, "* BYE Too many errors\r\n", 23);
    session_close(s, REASON_TOO_MANY_ERRORS);
}

/* A BAD for a command: tagged when the tag is known to be safe, untagged otherwise. */
static void
imap_bad(struct session *s, const char *tag, size_t tag_len, const char *text)
{
    if (tag != NULL)
        session_replyf(s, "%.*s BAD %s\r\n", (int)tag_len, tag, text);
    else
        session_replyf(s, "* BAD %s\r\n", text);
    if (session_count_error(s))
        imap_too_many_errors(s);
}

static int
cmd_capability(struct session *s, const struct dialogue_call *c)
{
    const struct imap_command *cmd = c->cmd;
    if (cmd->nargs != 0) {
        imap_bad(s, cmd->tag, cmd->tag_len, "CAPABILITY takes no arguments");
        return 0;
    }
    char caps[CAPS_MAX];
    session_replyf(s, "* CAPABILITY %s\r\n", imap_caps(s, caps));
    imap_reply_tagged(s, "OK Capability completed.");
    return 0;
}

static int
cmd_noop(struct session *s, const struct dialogue_call *c)
{
    imap_reply_tagged(s, "OK NOOP completed.");
    return 0;
}

static int
cmd_logout(struct session *s, const struct dialogue_call *c)
{
    session_reply(s, "* BYE Logging out\r\n", 19);
    imap_reply_tagged(s, "OK LOGOUT completed.");
    imap_enter_state(s, IMAP_STATE_LOGOUT);
    session_close(s, REASON_CLIENT_QUIT);
    return 0;
}

static bool
name_is(const struct imap_command *cmd, const char *name)
{
    return strlen(name) == cmd->name_len && strncasecmp(name, cmd->name, cmd->name_len) == 0;
}

static bool
is_string(const struct imap_arg *a)
{
    return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL;
}

/* ID NIL, or ID ("field" "value" ...) with at most 30 pairs (RFC 2971 §3.3). */
static bool
id_args_ok(const struct imap_command *cmd)
{
    if (cmd->nargs == 1)
        return imap_arg_is_atom(&cmd->args[0], "NIL");
    if (cmd->nargs < 2 || cmd->args[0].type != IMAP_ARG_LIST_BEGIN ||
        cmd->args[cmd->nargs - 1].type != IMAP_ARG_LIST_END)
        return false;
    size_t inner = cmd->nargs - 2;
    if (inner % 2 != 0 || inner > 60)
        return false;
    for (size_t i = 1; i + 1 < cmd->nargs; i++) {
        if (!is_string(&cmd->args[i]))
            return false;
    }
    return true;
}

static int
cmd_id(struct session *s, const struct dialogue_call *c)
{
    const struct imap_command *cmd = c->cmd;
    if (!id_args_ok(cmd)) {
        imap_bad(s, cmd->tag, cmd->tag_len, "Invalid ID arguments");
        return 0;
    }
    session_reply(s, "* ID NIL\r\n", 10);
    imap_reply_tagged(s, "OK ID completed.");
    return 0;
}

static int
cmd_starttls(struct session *s, const struct dialogue_call *c)
{
    const struct imap_command *cmd = c->cmd;
    if (!starttls_offered(s)) {
        imap_bad(s, cmd->tag, cmd->tag_len, "STARTTLS not available");
        return 0;
    }
    if (cmd->nargs != 0) {
        imap_bad(s, cmd->tag, cmd->tag_len, "STARTTLS takes no arguments");
        return 0;
    }
    switch (session_start_tls(s)) {
    case START_TLS_OK:
        imap_reply_tagged(s, "OK Begin TLS negotiation now");
        imap_enter_state(s, IMAP_STATE_STARTTLS);
        break;
    case START_TLS_BUSY:
        imap_reply_tagged(s, "NO [UNAVAILABLE] TLS not available due to temporary reason");
        break;
    case START_TLS_UNAVAILABLE:
        session_reply(s, "* BYE Internal error\r\n", 22);
        session_close(s, REASON_INTERNAL);
        break;
    }
    return 0;
}

static void
privacy_required(struct session *s)
{
    imap_reply_tagged(s, "NO [PRIVACYREQUIRED] Plaintext authentication disallowed on "
                         "non-secure connections.");
}

static int
cmd_login(struct session *s, const struct dialogue_call *c)
{
    const struct imap_command *cmd = c->cmd;
    struct imap_session *is = imap_session(s);
    if (cmd->nargs != 2 || !is_string(&cmd->args[0]) || !is_string(&cmd->args[1])) {
        imap_bad(s, cmd->tag, cmd->tag_len, "LOGIN needs a user name and a password");
        return 0;
    }
    char user[SASL_USER_MAX + 1], pass[SASL_PASS_MAX + 1];
    int ulen = imap_arg_string(&cmd->args[0], user, sizeof(user));
    int plen = imap_arg_string(&cmd->args[1], pass, sizeof(pass));
    sasl_exchange_start(&is->sasl, SASL_MECH_NONE);
    int r = ulen < 0 || plen < 0
                ? -1
                : credentials_set(&is->sasl.cred, user, (size_t)ulen, pass, (size_t)plen);
    explicit_bzero(pass, sizeof(pass));
    if (r != 0) {
        sasl_exchange_wipe(&is->sasl);
        imap_reply_tagged(s, "NO [AUTHENTICATIONFAILED] Authentication failed.");
        return 0;
    }
    is->mech = SASL_MECH_NONE;
    imap_login_start(s);
    return 0;
}

static void
sasl_await(struct session *s)
{
    imap_enter_state(s, IMAP_STATE_AUTHENTICATE);
}

static void
sasl_ended(struct session *s, bool bad)
{
    struct imap_session *is = imap_session(s);
    if (!bad)
        imap_reply_tagged(s, "BAD Authentication cancelled.");
    imap_enter_state(s, IMAP_STATE_PREAUTH);
    if (bad)
        imap_bad(s, is->tag, strlen(is->tag), "Invalid SASL response.");
}

const struct dialogue_sasl imap_sasl = {
    .challenge = "+ ",
    .await = sasl_await,
    .credentials = imap_login_start,
    .server_step = imap_auth_server_step,
    .ended = sasl_ended,
};

static int
cmd_authenticate(struct session *s, const struct dialogue_call *c)
{
    const struct imap_command *cmd = c->cmd;
    struct imap_session *is = imap_session(s);
    if (cmd->nargs < 1 || cmd->nargs > 2 || cmd->args[0].type != IMAP_ARG_ATOM ||
        (cmd->nargs == 2 && cmd->args[1].type != IMAP_ARG_ATOM)) {
        imap_bad(s, cmd->tag, cmd->tag_len, "AUTHENTICATE needs a mechanism");
        return 0;
    }
    enum sasl_mech mech = sasl_mech_parse(cmd->args[0].p, cmd->args[0].len);
    if (mech == SASL_MECH_NONE || !(session_auth_mechs(s) & SASL_MECH_BIT(mech))) {
        imap_reply_tagged(s, "NO Unsupported authentication mechanism.");
        return 0;
    }
    is->mech = mech;
    if (cmd->nargs == 2)
        dialogue_sasl_start(s, &imap_sasl, &is->sasl, mech, cmd->args[1].p, cmd->args[1].len);
    else
        dialogue_sasl_start(s, &imap_sasl, &is->sasl, mech, NULL, 0);
    return 0;
}

static const struct dialogue_command imap_cmds[] = {
    {-1, "CAPABILITY", DIALOGUE_IN(IMAP_STATE_PREAUTH), 0, cmd_capability},
    {-1, "NOOP", DIALOGUE_IN(IMAP_STATE_PREAUTH), 0, cmd_noop},
    {-1, "LOGOUT", DIALOGUE_IN(IMAP_STATE_PREAUTH), 0, cmd_logout},
    {-1, "ID", DIALOGUE_IN(IMAP_STATE_PREAUTH), 0, cmd_id},
    {-1, "STARTTLS", DIALOGUE_IN(IMAP_STATE_PREAUTH), 0, cmd_starttls},
    {-1, "LOGIN", DIALOGUE_IN(IMAP_STATE_PREAUTH), DIALOGUE_SECRET, cmd_login},
    {-1, "AUTHENTICATE", DIALOGUE_IN(IMAP_STATE_PREAUTH), DIALOGUE_SECRET, cmd_authenticate},
};

/* One more command before authentication ([limits] max_preauth_commands); false: closing. */
static bool
count_command(struct session *s)
{
    if (session_count_command(s)) {
        session_reply(s, "* BYE Too many commands\r\n", 25);
        session_close(s, REASON_TOO_MANY_COMMANDS);
        return false;
    }
    return true;
}

static void
imap_dispatch(struct session *s, const struct imap_command *cmd)
{
    struct imap_session *is = imap_session(s);
    memcpy(is->tag, cmd->tag, cmd->tag_len);
    is->tag[cmd->tag_len] = '\0';
    if (!count_command(s))
        return;
    const struct dialogue_command *c = NULL;
    switch (dialogue_find(s, imap_cmds, ARRAY_SIZE(imap_cmds), -1, cmd->name, cmd->name_len,
                          is->state, &c)) {
    case DIALOGUE_RUN:
        c->handler(s, &(struct dialogue_call){.st = is, .cmd = cmd});
        return;
    case DIALOGUE_NEEDS_TLS:
        privacy_required(s);
        return;
    case DIALOGUE_UNKNOWN:
    case DIALOGUE_NOT_HERE:
    case DIALOGUE_OUT_OF_SEQUENCE:
        break;
    }
    session_log_peer(s, LOG_DEBUG, EV_IMAP_REFUSED, "command", cmd->name, cmd->name_len);
    imap_bad(s, cmd->tag, cmd->tag_len, "Command not permitted before authentication.");
}

/* A synchronising literal gets "+" only in a command that will be accepted: never in LOGIN
 * before TLS (the client would send its password in the clear), nor in refused commands. */
static bool
literal_welcome(struct session *s, const struct imap_command *cmd)
{
    struct imap_session *is = imap_session(s);
    memcpy(is->tag, cmd->tag, cmd->tag_len);
    is->tag[cmd->tag_len] = '\0';
    if (name_is(cmd, "ID") || (name_is(cmd, "LOGIN") && dialogue_secure(s)))
        return true;       /* counted when it is dispatched */
    if (!count_command(s)) /* a refusal is a command and an error: it cannot repeat forever */
        return false;
    if (name_is(cmd, "LOGIN")) {
        privacy_required(s);
        if (session_count_error(s))
            imap_too_many_errors(s);
        return false;
    }
    imap_bad(s, cmd->tag, cmd->tag_len, "Command not permitted before authentication.");
    return false;
}

static size_t
line_max(struct session *s)
{
    return MOAT_MIN((size_t)IMAP_LINE_MAX, session_listener(s)->limits.client_buffer_bytes);
}

static size_t
command_input(struct session *s, const char *p, size_t n)
{
    struct imap_session *is = imap_session(s);
    struct imap_command cmd;
    if (crossproto_http(p, n)) { /* never answer (and so reflect) another protocol's lines */
        session_log(s, LOG_INFO, EV_REFUSED, "reason=cross_protocol kind=http");
        session_replyf(s, "* BYE This is an IMAP server\r\n");
        session_close(s, REASON_PROTOCOL_ERROR);
        return n;
    }
    enum imap_parse_status r =
        imap_parse_command(p, n, is->cont_done, IMAP_LITERAL_MAX, line_max(s), &cmd);
    switch (r) {
    case IMAP_PARSE_MORE:
        return 0;
    case IMAP_PARSE_NEED_CONTINUATION:
        if (!literal_welcome(s, &cmd)) {
            is->cont_done = 0;
            return cmd.used; /* refused without "+": the client sends no literal octets */
        }
        is->cont_done = cmd.used;
        session_reply(s, "+ OK\r\n", 6);
        return 0;
    case IMAP_PARSE_OK:
        is->cont_done = 0;
        imap_dispatch(s, &cmd);
        return cmd.used;
    case IMAP_PARSE_BAD:
        is->cont_done = 0;
        is->skip_line = cmd.skip_line;
        imap_bad(s, cmd.tag, cmd.tag_len, cmd.error);
        return cmd.used;
    case IMAP_PARSE_TOOBIG:
        is->cont_done = 0;
        session_replyf(s, "%.*s BAD [TOOBIG] Literal too large.\r\n", (int)cmd.tag_len, cmd.tag);
        if (cmd.literal_nonsync) { /* its octets are on their way: no way to resynchronise */
            session_reply(s, "* BYE Literal too large\r\n", 25);
            session_close(s, REASON_PROTOCOL_ERROR);
        } else if (session_count_error(s)) {
            imap_too_many_errors(s);
        }
        return cmd.used;
    case IMAP_PARSE_TOO_LONG:
        is->cont_done = 0;
        is->skip_line = cmd.skip_line;
        imap_bad(s, NULL, 0, "Command line too long.");
        return cmd.used;
    }
    return 0;
}

/* One SASL response line while AUTHENTICATE is under way. */
static size_t
authenticate_input(struct session *s, const char *p, size_t n)
{
    struct imap_session *is = imap_session(s);
    size_t len = 0, used = 0;
    bool crlf = false;
    switch (buf_find_line(p, n, line_max(s), &len, &used, &crlf)) {
    case LINE_MORE:
        return 0;
    case LINE_TOO_LONG: {
        dialogue_sasl_end(s, &imap_sasl, &is->sasl, true);
        const char *lf = memchr(p, '\n', n); /* its end may be here already, past the limit */
        if (lf != NULL)
            return (size_t)(lf - p) + 1;
        is->skip_line = true;
        return n;
    }
    case LINE_OK:
        break;
    }
    dialogue_sasl_step(s, &imap_sasl, &is->sasl, p, len);
    return used;
}

static size_t
imap_on_client_input(struct session *s, const char *p, size_t n)
{
    struct imap_session *is = imap_session(s);
    if (is->skip_line) {
        const char *lf = memchr(p, '\n', n);
        if (lf == NULL)
            return n;
        is->skip_line = false;
        return (size_t)(lf - p) + 1;
    }
    switch (is->state) {
    case IMAP_STATE_PREAUTH:
        return command_input(s, p, n);
    case IMAP_STATE_AUTHENTICATE:
        return authenticate_input(s, p, n);
    case IMAP_STATE_INIT:
    case IMAP_STATE_STARTTLS:
    case IMAP_STATE_VERIFY:
    case IMAP_STATE_CONNECT:
    case IMAP_STATE_BACKEND_GREETING:
    case IMAP_STATE_BACKEND_ID:
    case IMAP_STATE_BACKEND_LOGIN:
    case IMAP_STATE_RELAY:
    case IMAP_STATE_LOGOUT:
        break;
    }
    session_input_pause(s); /* not reading commands now: let them wait */
    return 0;
}

static void
imap_on_start(struct session *s)
{
    imap_enter_state(s, IMAP_STATE_PREAUTH);
    char caps[CAPS_MAX];
    session_replyf(s, "* OK [CAPABILITY %s] %s ready.\r\n", imap_caps(s, caps),
                   session_config(s)->hostname);
}

static void
imap_on_tls_ready(struct session *s)
{
    struct imap_session *is = imap_session(s);
    enum imap_state old = is->state;
    sasl_exchange_wipe(&is->sasl);
    explicit_bzero(is, sizeof(*is)); /* forget everything said before TLS */
    is->state = old;
    imap_enter_state(s, IMAP_STATE_PREAUTH);
}

static void
imap_farewell(struct session *s, enum close_reason r)
{
    const char *text = NULL;
    switch (close_reason_farewell(r)) {
    case FAREWELL_TIMEOUT:
        text = "* BYE Autologout; idle for too long\r\n";
        break;
    case FAREWELL_SHUTDOWN:
        text = "* BYE Server shutting down\r\n";
        break;
    case FAREWELL_POLICY:
        text = "* BYE Too many errors\r\n";
        break;
    case FAREWELL_PROTOCOL:
        text = "* BYE Protocol error\r\n";
        break;
    case FAREWELL_UNAVAILABLE:
        text = "* BYE Service unavailable\r\n";
        break;
    case FAREWELL_NONE:
        break;
    }
    if (text != NULL)
        session_reply(s, text, strlen(text));
}

static void
imap_on_close(struct session *s)
{
    sasl_exchange_wipe(&imap_session(s)->sasl);
}

static const char *
imap_proto_state_name(const struct session *s)
{
    return dialogue_state_name(
        &imap_states,
        ((const struct imap_session *)session_proto_state((struct session *)s))->state);
}

const struct protocol imap_protocol = {
    .name = "imap",
    .state_size = sizeof(struct imap_session),
    .alpn = "imap",
    .sasl_service = "imap",
    .relay_idle_ms = 31u * 60u * 1000u, /* RFC 9051 §5.4: at least 30 minutes */
    .refusals = {.busy = "* BYE [UNAVAILABLE] ", .denied = "* BYE "},
    .handoff = HANDOFF_MASTER_USER,
    .farewell_in_relay = true,
    .on_start = imap_on_start,
    .on_client_input = imap_on_client_input,
    .on_tls_ready = imap_on_tls_ready,
    .on_backend = imap_backend_event,
    .on_backend_input = imap_backend_input,
    .farewell = imap_farewell,
    .on_close = imap_on_close,
    .state_name = imap_proto_state_name,
    .on_auth_done = imap_on_auth_done,
};
