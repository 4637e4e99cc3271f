/*
 * smtp.c: the SMTP front (MX on 25, submission on 587/465): the client-side state machine.
 * It owns the dialogue before the backend (greeting, EHLO, STARTTLS, AUTH, NOOP/RSET/QUIT/HELP),
 * enforces relay policy on every MAIL and RCPT whatever the backend would allow, and hands the
 * rest to smtp_backend.c. It never passes a command it did not parse, never lets bytes that came
 * before STARTTLS reach the TLS session, and never says 250 to a message the backend has not.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "protocols.h"
#include "smtp_int.h"

#define ST_FRESH (1u << SMTP_FRESH)
#define ST_READY (1u << SMTP_READY)
#define ST_RELAY (1u << SMTP_RELAY)
#define ST_ALL (ST_FRESH | ST_READY | ST_RELAY)

/* What a command handler did with its line. */
enum cmd_result {
    CMD_DONE = 0, /* consumed */
    CMD_WAIT      /* not consumed: input paused until the backend lets it go on */
};

static const char *const state_names[] = {
    [SMTP_FRESH] = "fresh",
    [SMTP_READY] = "ready",
    [SMTP_STARTTLS] = "starttls",
    [SMTP_AUTH_LINE] = "auth_line",
    [SMTP_AUTH_VERIFY] = "auth_verify",
    [SMTP_HANDOFF] = "handoff",
    [SMTP_RELAY] = "relay",
    [SMTP_DATA] = "data",
    [SMTP_CLOSING] = "closing",
    [SMTP_GREET_WAIT] = "greet_wait",
    [SMTP_DATA_CHECK] = "data_check",
};
static const struct dialogue_states smtp_states = {state_names, ARRAY_SIZE(state_names),
                                                   EV_SMTP_STATE};

struct smtp_session *
smtp_st(struct session *s)
{
    return session_proto_state(s);
}

void
smtp_enter_state(struct session *s, enum smtp_state next)
{
    struct smtp_session *st = smtp_st(s);
    dialogue_state_change(s, &smtp_states, st->state, next);
    st->state = next;
}

void
smtp_pause(struct session *s)
{
    smtp_st(s)->paused = true;
    session_input_pause(s);
}

void
smtp_resume(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    if (!st->paused)
        return;
    st->paused = false;
    session_input_resume(s);
}

void
smtp_close_421(struct session *s, const char *code, const char *text, enum close_reason r)
{
    session_replyf(s, "421 %s %s %s\r\n", code, session_config(s)->hostname, text);
    smtp_enter_state(s, SMTP_CLOSING);
    session_close(s, r);
}

/* A peer error: the reply, and the session's error budget. */
static void
smtp_error(struct session *s, const char *reply)
{
    session_replyf(s, "%s\r\n", reply);
    if (session_count_error(s))
        smtp_close_421(s, "4.7.0", "Error: too many errors", REASON_TOO_MANY_ERRORS);
}

void
smtp_reply_ehlo(struct session *s)
{
    const struct smtp_session *st = smtp_st(s);
    const struct config_listener *l = session_listener(s);
    char size[48], auth[128] = "AUTH";
    const char *lines[12];
    size_t k = 0;
    snprintf(size, sizeof(size), "SIZE %llu", (unsigned long long)l->limits.message_size_bytes);
    lines[k++] = session_config(s)->hostname;
    lines[k++] = "PIPELINING";
    lines[k++] = l->limits.message_size_bytes > 0 ? size : "SIZE";
    if (l->tls == LTLS_STARTTLS && !session_is_tls(s) && !st->backend_up)
        lines[k++] = "STARTTLS";
    if (l->auth && session_is_tls(s) && !st->authenticated && !st->backend_up &&
        sasl_mechs_format(session_auth_mechs(s), " ", auth + 4, sizeof(auth) - 4) > 0)
        lines[k++] = auth;
    lines[k++] = "ENHANCEDSTATUSCODES";
    lines[k++] = "8BITMIME";
    if (l->dsn)
        lines[k++] = "DSN";
    if (l->smtputf8)
        lines[k++] = "SMTPUTF8";
    for (size_t i = 0; i < k; i++)
        session_replyf(s, "250%c%s\r\n", i + 1 < k ? '-' : ' ', lines[i]);
}

/* A local reply must not overtake backend replies still owed: wait for them. */
static bool
smtp_may_reply(struct session *s)
{
    if (smtp_fifo_empty(smtp_st(s)))
        return true;
    smtp_pause(s);
    return false;
}

/* --- handlers --- */

static int
cmd_helo(struct session *s, const struct dialogue_call *call)
{
    struct smtp_session *st = call->st;
    const struct smtp_cmd *c = call->cmd;
    const char *line = call->line;
    size_t n = call->len;
    bool bad = c->args_len == 0 || c->args_len > SMTP_HELO_MAX;
    for (size_t i = 0; i < c->args_len && !bad; i++)
        bad = c->args[i] == ' ' || c->args[i] == '\t' || (unsigned char)c->args[i] > 0x7e;
    if (bad) {
        if (!smtp_may_reply(s))
            return CMD_WAIT;
        smtp_error(s, c->verb == SMTP_VERB_EHLO ? "501 5.5.4 Syntax: EHLO hostname"
                                                : "501 5.5.4 Syntax: HELO hostname");
        return CMD_DONE;
    }
    memcpy(st->helo, c->args, c->args_len);
    st->helo[c->args_len] = '\0';
    st->ehlo = c->verb == SMTP_VERB_EHLO;
    session_dns_helo(s, st->helo); /* smtp_dns.c applies the HELO check at MAIL */
    if (st->state == SMTP_RELAY) {
        st->in_mail = false;
        st->rcpt_count = 0;
        smtp_relay_command(s, line, n, st->ehlo ? PEND_EHLO : PEND_OTHER);
        return CMD_DONE;
    }
    smtp_enter_state(s, SMTP_READY);
    if (st->ehlo)
        smtp_reply_ehlo(s);
    else
        session_replyf(s, "250 %s\r\n", session_config(s)->hostname);
    return CMD_DONE;
}

static int
cmd_starttls(struct session *s, const struct dialogue_call *call)
{
    const struct smtp_cmd *c = call->cmd;
    const struct config_listener *l = session_listener(s);
    if (c->args_len > 0) {
        smtp_error(s, "501 5.5.4 Syntax: STARTTLS");
        return CMD_DONE;
    }
    if (l->tls != LTLS_STARTTLS) {
        smtp_error(s, "502 5.5.1 Error: command not implemented");
        return CMD_DONE;
    }
    if (session_is_tls(s)) {
        smtp_error(s, "503 5.5.1 Error: TLS already active");
        return CMD_DONE;
    }
    switch (session_start_tls(s)) {
    case START_TLS_OK:
        session_replyf(s, "220 2.0.0 Ready to start TLS\r\n");
        smtp_enter_state(s, SMTP_STARTTLS);
        return CMD_DONE;
    case START_TLS_BUSY:
    case START_TLS_UNAVAILABLE:
        break;
    }
    session_replyf(s, "454 4.7.0 TLS not available due to temporary reason\r\n");
    return CMD_DONE;
}

static void
sasl_await(struct session *s)
{
    smtp_enter_state(s, SMTP_AUTH_LINE);
}

static void
sasl_ended(struct session *s, bool bad)
{
    smtp_enter_state(s, SMTP_READY);
    if (bad)
        smtp_error(s, "501 5.5.2 Error: cannot decode response");
    else
        session_replyf(s, "501 5.7.0 Authentication aborted\r\n");
}

const struct dialogue_sasl smtp_sasl = {
    .challenge = "334 ",
    .await = sasl_await,
    .credentials = smtp_auth_start,
    .server_step = smtp_auth_server_step,
    .ended = sasl_ended,
};

static const char *
auth_refusal(struct session *s, const struct smtp_session *st)
{
    if (!session_listener(s)->auth)
        return "503 5.5.1 Error: authentication not enabled";
    if (!session_is_tls(s))
        return "538 5.7.11 Encryption required for requested authentication mechanism";
    if (st->authenticated)
        return "503 5.5.1 Error: already authenticated";
    if (st->backend_up || st->state == SMTP_RELAY)
        return "503 5.5.1 Error: MAIL transaction in progress";
    return NULL;
}

static int
cmd_auth(struct session *s, const struct dialogue_call *call)
{
    struct smtp_session *st = call->st;
    const struct smtp_cmd *c = call->cmd;
    if (!smtp_may_reply(s))
        return CMD_WAIT;
    const char *refusal = auth_refusal(s, st);
    if (refusal != NULL) {
        smtp_error(s, refusal);
        return CMD_DONE;
    }
    size_t m = 0;
    while (m < c->args_len && c->args[m] != ' ')
        m++;
    enum sasl_mech mech = sasl_mech_parse(c->args, m);
    if (mech == SASL_MECH_NONE || !(session_auth_mechs(s) & SASL_MECH_BIT(mech))) {
        smtp_error(s, "504 5.5.4 Unsupported authentication mechanism");
        return CMD_DONE;
    }
    while (m < c->args_len && c->args[m] == ' ')
        m++;
    dialogue_sasl_start(s, &smtp_sasl, &st->sasl, mech, c->args + m, c->args_len - m);
    return CMD_DONE;
}

/* Relay policy for MAIL: the refusal, or NULL. */
static const char *
mail_refusal(struct session *s, const struct smtp_session *st, const struct smtp_path *path)
{
    const struct config_listener *l = session_listener(s);
    if (l->proto == LPROTO_SUBMISSION && !st->authenticated)
        return "530 5.7.0 Authentication required";
    const char *v;
    size_t vlen;
    uint64_t size;
    if (smtp_param_find(path->params, path->params_len, "SIZE", &v, &vlen)) {
        if (smtp_size_parse(v, vlen, &size) != 0)
            return "501 5.5.4 Bad SIZE syntax";
        if (l->limits.message_size_bytes > 0 && size > l->limits.message_size_bytes)
            return "552 5.3.4 Message size exceeds fixed limit";
    }
    /* every listener where the client logged in, not only submission: an MX listener with
     * auth = yes must not let one user send as another */
    if (st->authenticated && l->sender_login_match &&
        !sender_map_allows(l->sender_map, path->addr, path->addr_len, st->login))
        return "553 5.7.1 Sender address rejected: not owned by the authenticated user";
    return NULL;
}

static int
cmd_mail(struct session *s, const struct dialogue_call *call)
{
    struct smtp_session *st = call->st;
    const struct smtp_cmd *c = call->cmd;
    const char *line = call->line;
    size_t n = call->len;
    struct smtp_path path;
    const char *refusal = NULL;
    if (smtp_path_parse(c->args, c->args_len, "FROM:", &path) != SMTP_PARSE_OK)
        refusal = "501 5.5.4 Syntax: MAIL FROM:<address>";
    else
        refusal = mail_refusal(s, st, &path);
    if (refusal == NULL && !session_rate_allows(s, CLIENT_RATE_MESSAGES))
        refusal = "450 4.7.1 Error: too many messages from your host, try again later";
    if (refusal != NULL) {
        if (!smtp_may_reply(s))
            return CMD_WAIT;
        smtp_error(s, refusal);
        return CMD_DONE;
    }
    bool dns_wait;
    if (smtp_dns_gate(s, st, &path, &dns_wait)) /* DNS checks: wait for them, or refused */
        return dns_wait ? CMD_WAIT : CMD_DONE;
    if (!st->backend_up) {
        smtp_handoff_start(s, false); /* the line is relayed once the backend is ready */
        return CMD_WAIT;
    }
    st->rcpt_count = 0;
    smtp_relay_command(s, line, n, PEND_MAIL);
    return CMD_DONE;
}

/* May an unauthenticated client send to this recipient? Only plain addresses in a local domain
 * (no source route, no %-hack, no '!' path, no quoted '@'); "postmaster" alone too. */
static bool
rcpt_is_local(struct session *s, const struct smtp_path *path)
{
    if (path->domain == NULL)
        return smtp_equal_nocase(path->addr, path->addr_len, "postmaster", 10);
    if (path->source_route)
        return false;
    size_t local_len = (size_t)(path->domain - 1 - path->addr);
    for (size_t i = 0; i < local_len; i++)
        if (path->addr[i] == '%' || path->addr[i] == '!' || path->addr[i] == '@')
            return false;
    return smtp_domain_in_list(path->domain, path->domain_len, session_listener(s)->local_domains);
}

static int
cmd_rcpt(struct session *s, const struct dialogue_call *call)
{
    struct smtp_session *st = call->st;
    const struct smtp_cmd *c = call->cmd;
    const char *line = call->line;
    size_t n = call->len;
    struct smtp_path path;
    const char *refusal = NULL;
    if (smtp_path_parse(c->args, c->args_len, "TO:", &path) != SMTP_PARSE_OK || path.addr_len == 0)
        refusal = "501 5.5.4 Syntax: RCPT TO:<address>";
    else if (!st->authenticated && !rcpt_is_local(s, &path))
        refusal = "554 5.7.1 Relay access denied";
    else if (st->rcpt_count >= session_listener(s)->limits.max_recipients)
        refusal = "452 4.5.3 Error: too many recipients";
    else if (!session_rate_allows(s, CLIENT_RATE_RECIPIENTS))
        refusal = "452 4.5.3 Error: too many recipients from your host, try again later";
    if (refusal != NULL) {
        if (!smtp_may_reply(s))
            return CMD_WAIT;
        if (refusal[0] == '5' && refusal[2] == '4')
            session_log_peer(s, LOG_INFO, EV_RELAY_DENIED, "rcpt", path.addr, path.addr_len);
        smtp_error(s, refusal);
        return CMD_DONE;
    }
    st->rcpt_count++;
    smtp_relay_command(s, line, n, PEND_RCPT);
    return CMD_DONE;
}

static int
cmd_data(struct session *s, const struct dialogue_call *call)
{
    const struct smtp_cmd *c = call->cmd;
    const char *line = call->line;
    size_t n = call->len;
    if (c->args_len > 0) {
        if (!smtp_may_reply(s))
            return CMD_WAIT;
        smtp_error(s, "501 5.5.4 Syntax: DATA");
        return CMD_DONE;
    }
    smtp_relay_command(s, line, n, PEND_DATA);
    return CMD_DONE;
}

static int
cmd_simple(struct session *s, const struct dialogue_call *call)
{
    struct smtp_session *st = call->st;
    const struct smtp_cmd *c = call->cmd;
    const char *line = call->line;
    size_t n = call->len;
    if (st->state == SMTP_RELAY && (c->verb == SMTP_VERB_RSET || c->verb == SMTP_VERB_NOOP)) {
        if (c->verb == SMTP_VERB_RSET)
            st->rcpt_count = 0;
        smtp_relay_command(s, line, n, c->verb == SMTP_VERB_RSET ? PEND_RSET : PEND_OTHER);
        return CMD_DONE;
    }
    if (!smtp_may_reply(s))
        return CMD_WAIT;
    switch (c->verb) {
    case SMTP_VERB_QUIT:
        if (st->backend_up)
            session_backend_send(s, "QUIT\r\n", 6);
        session_replyf(s, "221 2.0.0 Bye\r\n");
        smtp_enter_state(s, SMTP_CLOSING);
        session_close(s, REASON_CLIENT_QUIT);
        return CMD_DONE;
    case SMTP_VERB_HELP:
        session_replyf(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET "
                          "NOOP QUIT HELP\r\n");
        return CMD_DONE;
    case SMTP_VERB_REFUSED:
        smtp_error(s, "502 5.5.1 Error: command not implemented");
        return CMD_DONE;
    case SMTP_VERB_HTTP:
        session_log(s, LOG_INFO, EV_HTTP_REQUEST, "state=%s",
                    dialogue_state_name(&smtp_states, st->state));
        smtp_close_421(s, "4.7.0", "Error: HTTP request rejected", REASON_PROTOCOL_ERROR);
        return CMD_DONE;
    case SMTP_VERB_UNKNOWN:
        smtp_error(s, "500 5.5.2 Error: command not recognized");
        return CMD_DONE;
    case SMTP_VERB_EHLO:
    case SMTP_VERB_HELO:
    case SMTP_VERB_STARTTLS:
    case SMTP_VERB_AUTH:
    case SMTP_VERB_MAIL:
    case SMTP_VERB_RCPT:
    case SMTP_VERB_DATA:
    case SMTP_VERB_RSET:
    case SMTP_VERB_NOOP:
        break;
    }
    session_replyf(s, "250 2.0.0 Ok\r\n");
    return CMD_DONE;
}

/* AUTH is no DIALOGUE_SECRET: its refusals (not enabled here, no TLS, already logged in, in a
 * transaction) come in SMTP's own order from the handler. */
static const struct dialogue_command commands[] = {
    {SMTP_VERB_EHLO, NULL, ST_ALL, 0, cmd_helo},
    {SMTP_VERB_HELO, NULL, ST_ALL, 0, cmd_helo},
    {SMTP_VERB_STARTTLS, NULL, ST_FRESH | ST_READY, 0, cmd_starttls},
    {SMTP_VERB_AUTH, NULL, ST_READY | ST_RELAY, 0, cmd_auth},
    {SMTP_VERB_MAIL, NULL, ST_READY | ST_RELAY, 0, cmd_mail},
    {SMTP_VERB_RCPT, NULL, ST_RELAY, 0, cmd_rcpt},
    {SMTP_VERB_DATA, NULL, ST_RELAY, 0, cmd_data},
    {SMTP_VERB_RSET, NULL, ST_ALL, 0, cmd_simple},
    {SMTP_VERB_NOOP, NULL, ST_ALL, 0, cmd_simple},
    {SMTP_VERB_QUIT, NULL, ST_ALL, 0, cmd_simple},
    {SMTP_VERB_HELP, NULL, ST_ALL, 0, cmd_simple},
    {SMTP_VERB_REFUSED, NULL, ST_ALL, 0, cmd_simple},
    {SMTP_VERB_HTTP, NULL, ST_ALL, 0, cmd_simple},
    {SMTP_VERB_UNKNOWN, NULL, ST_ALL, 0, cmd_simple},
};

static const char *
sequence_error(const struct smtp_session *st, enum smtp_verb v)
{
    if (st->state == SMTP_FRESH)
        return "503 5.5.1 Error: send HELO/EHLO first";
    if (st->state == SMTP_READY && v == SMTP_VERB_RCPT)
        return "503 5.5.1 Error: need MAIL command";
    if (st->state == SMTP_READY && v == SMTP_VERB_DATA)
        return "503 5.5.1 Error: need RCPT command";
    return "503 5.5.1 Error: bad sequence of commands";
}

/* Pre-auth budget: commands before authentication or hand-off. */
static bool
smtp_count_command(struct session *s, struct smtp_session *st)
{
    if (st->backend_up || st->authenticated)
        return true;
    if (session_count_command(s)) {
        smtp_close_421(s, "4.7.0", "Error: too many commands", REASON_TOO_MANY_COMMANDS);
        return false;
    }
    return true;
}

static enum cmd_result
smtp_command(struct session *s, struct smtp_session *st, const char *line, size_t n)
{
    struct smtp_cmd c;
    if (smtp_cmd_parse(line, n, &c) != SMTP_PARSE_OK) {
        if (!smtp_may_reply(s))
            return CMD_WAIT;
        smtp_error(s, "500 5.5.2 Error: bad characters in command");
        return CMD_DONE;
    }
    const struct dialogue_command *cmd = NULL;
    switch (
        dialogue_find(s, commands, ARRAY_SIZE(commands), (int)c.verb, NULL, 0, st->state, &cmd)) {
    case DIALOGUE_RUN:
        return (enum cmd_result)cmd->handler(
            s, &(struct dialogue_call){.st = st, .cmd = &c, .line = line, .len = n});
    case DIALOGUE_OUT_OF_SEQUENCE:
        if (!smtp_may_reply(s))
            return CMD_WAIT;
        smtp_error(s, sequence_error(st, c.verb));
        return CMD_DONE;
    case DIALOGUE_UNKNOWN: /* every verb the parser knows has its row */
    case DIALOGUE_NEEDS_TLS:
    case DIALOGUE_NOT_HERE:
        break;
    }
    return CMD_DONE;
}

static size_t
smtp_discard(struct smtp_session *st, const char *p, size_t n)
{
    const char *lf = memchr(p, '\n', n);
    if (lf == NULL) {
        st->discarding = true;
        return n;
    }
    st->discarding = false;
    return (size_t)(lf - p) + 1;
}

/* An over-long line: one error, then its rest is skipped up to the LF. */
static void
smtp_line_too_long(struct session *s, struct smtp_session *st, size_t n)
{
    if (st->state == SMTP_AUTH_LINE) {
        session_auth_abort(s);
        sasl_exchange_wipe(&st->sasl);
        smtp_enter_state(s, SMTP_READY);
        smtp_error(s, "500 5.5.6 Authentication Exchange line is too long");
    } else {
        smtp_error(s, "500 5.5.2 Error: line too long");
    }
}

static size_t smtp_early_talker(struct session *s, struct smtp_session *st);

static size_t
smtp_on_client_input(struct session *s, const char *p, size_t n)
{
    struct smtp_session *st = smtp_st(s);
    switch (st->state) {
    case SMTP_GREET_WAIT:
        return smtp_early_talker(s, st);
    case SMTP_STARTTLS:
    case SMTP_AUTH_VERIFY:
    case SMTP_HANDOFF:
    case SMTP_CLOSING:
    case SMTP_DATA_CHECK:
        smtp_pause(s);
        return 0;
    case SMTP_DATA:
        return smtp_data_input(s, p, n);
    case SMTP_FRESH:
    case SMTP_READY:
    case SMTP_AUTH_LINE:
    case SMTP_RELAY:
        break;
    }
    if (st->discarding)
        return smtp_discard(st, p, n);
    size_t len, used;
    bool crlf;
    size_t max = st->state == SMTP_AUTH_LINE ? SMTP_AUTH_LINE_MAX : SMTP_CMD_LINE_MAX;
    switch (buf_find_line(p, n, max, &len, &used, &crlf)) {
    case LINE_MORE:
        return 0;
    case LINE_TOO_LONG:
        if (!smtp_may_reply(s))
            return 0;
        smtp_line_too_long(s, st, n);
        return smtp_discard(st, p, n);
    case LINE_OK:
        break;
    }
    if (st->skip_line) {
        st->skip_line = false;
        return used;
    }
    if (st->state == SMTP_AUTH_LINE) {
        dialogue_sasl_step(s, &smtp_sasl, &st->sasl, p, len);
        return used;
    }
    if (st->state == SMTP_RELAY && (st->data_wait || st->fifo_len >= SMTP_FIFO_MAX)) {
        smtp_pause(s);
        return 0;
    }
    if (!smtp_count_command(s, st))
        return used;
    return smtp_command(s, st, p, len) == CMD_DONE ? used : 0;
}

static void
smtp_greet(struct session *s)
{
    smtp_enter_state(s, SMTP_FRESH);
    session_replyf(s, "220 %s ESMTP\r\n", session_config(s)->hostname);
}

/* greet_pause on an MX listener: like postscreen's pregreet test, a client that talks before
 * the greeting is a bot that does not wait for it. */
static void
smtp_on_start(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    const struct config_listener *l = session_listener(s);
    if (l->proto == LPROTO_SMTP && l->greet_pause_ms > 0 && !session_is_tls(s)) {
        st->state = SMTP_GREET_WAIT;
        session_timer_start(s, l->greet_pause_ms);
        return;
    }
    st->state = SMTP_FRESH;
    session_replyf(s, "220 %s ESMTP\r\n", session_config(s)->hostname);
}

static void
smtp_on_timer(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    if (st->state == SMTP_DATA_CHECK) {
        smtp_dns_data_end(s, true);
        return;
    }
    if (st->state != SMTP_GREET_WAIT)
        return;
    smtp_greet(s);
    session_input_resume(s);
}

static size_t
smtp_early_talker(struct session *s, struct smtp_session *st)
{
    const struct config_listener *l = session_listener(s);
    bool dry = l->greet_mode == MODE_LOG;
    if (!st->early_talker) {
        st->early_talker = true;
        session_log(s, LOG_INFO, dry ? EV_WOULD_REFUSE : EV_REFUSED, "reason=early_talker mode=%s",
                    dry ? "log" : "enforce");
    }
    if (dry) {
        session_input_pause(s); /* answered after the greeting, in order */
        return 0;
    }
    session_timer_stop(s);
    smtp_enter_state(s, SMTP_CLOSING);
    session_replyf(s, "554 5.5.1 %s Error: talking before the greeting\r\n",
                   session_config(s)->hostname);
    session_close(s, REASON_PROTOCOL_ERROR);
    return 0;
}

static void
smtp_on_tls_ready(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    sasl_exchange_wipe(&st->sasl);
    memset(st, 0, sizeof(*st)); /* RFC 3207 §4.2: forget everything the client said */
    st->state = SMTP_FRESH;
    session_input_resume(s);
}

static void
smtp_farewell(struct session *s, enum close_reason r)
{
    const char *host = session_config(s)->hostname;
    switch (close_reason_farewell(r)) {
    case FAREWELL_TIMEOUT:
        session_replyf(s, "421 4.4.2 %s Error: timeout exceeded\r\n", host);
        return;
    case FAREWELL_SHUTDOWN:
        session_replyf(s, "421 4.3.2 %s Service shutting down\r\n", host);
        return;
    case FAREWELL_POLICY:
        session_replyf(s, "421 4.7.0 %s Error: too many errors\r\n", host);
        return;
    case FAREWELL_PROTOCOL:
    case FAREWELL_UNAVAILABLE:
        session_replyf(s, "421 4.3.0 %s Service not available, closing connection\r\n", host);
        return;
    case FAREWELL_NONE:
        return;
    }
}

static void
smtp_on_close(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    sasl_exchange_wipe(&st->sasl);
}

static const char *
smtp_state_name(const struct session *s)
{
    const struct smtp_session *st = session_proto_state((struct session *)s);
    return dialogue_state_name(&smtp_states, st->state);
}

const struct protocol smtp_protocol = {
    .name = "smtp",
    .state_size = sizeof(struct smtp_session),
    .alpn = "smtp",
    .sasl_service = "smtp",
    .relay_idle_ms = 0, /* the command timeout */
    .refusals = {.busy = "421 4.7.0 ", .denied = "554 5.7.1 ", .names_host = true},
    .handoff = HANDOFF_XCLIENT,
    .on_start = smtp_on_start,
    .on_client_input = smtp_on_client_input,
    .on_tls_ready = smtp_on_tls_ready,
    .on_backend = smtp_on_backend,
    .on_backend_input = smtp_on_backend_input,
    .farewell = smtp_farewell,
    .on_timer = smtp_on_timer,
    .on_close = smtp_on_close,
    .state_name = smtp_state_name,
    .on_dns_done = smtp_on_dns_done,
    .on_auth_done = smtp_on_auth_done,
};
