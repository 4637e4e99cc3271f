/*
 * smtp_backend.c: the SMTP front's backend leg: the hand-off (greeting, EHLO, XCLIENT or a PROXY
 * header, EHLO with the client's name, AUTH PLAIN replay for the backend verifier), then the
 * command-aware relay: a FIFO of the replies the backend owes, replies passed on in order and
 * never interleaved, and DATA content through the canonicaliser. It never pipelines the hand-off,
 * never forwards a byte of the backend's before the hand-off is complete, and never sends the
 * final dot of a message it refused.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "identity.h"
#include "log.h"
#include "smtp_int.h"

#define XCLIENT_LINE_MAX IDENTITY_XCLIENT_LINE_MAX

bool
smtp_fifo_empty(const struct smtp_session *st)
{
    return st->fifo_len == 0;
}

static void
fifo_push(struct smtp_session *st, enum smtp_pending what)
{
    MOAT_ASSERT(st->fifo_len < SMTP_FIFO_MAX);
    st->fifo[(st->fifo_head + st->fifo_len) % SMTP_FIFO_MAX] = what;
    st->fifo_len++;
}

static enum smtp_pending
fifo_pop(struct smtp_session *st)
{
    MOAT_ASSERT(st->fifo_len > 0);
    enum smtp_pending what = st->fifo[st->fifo_head];
    st->fifo_head = (st->fifo_head + 1) % SMTP_FIFO_MAX;
    st->fifo_len--;
    return what;
}

/* Forget the backend leg: the next MAIL (or AUTH) opens a new one. */
static void
backend_drop(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    session_backend_close(s);
    st->ho = HO_NONE;
    st->backend_up = false;
    st->in_mail = false;
    st->data_wait = false;
    st->rcpt_count = 0;
    st->fifo_len = 0;
    st->fifo_head = 0;
}

void
smtp_handoff_start(struct session *s, bool for_auth)
{
    struct smtp_session *st = smtp_st(s);
    const struct config_listener *l = session_listener(s);
    if (!for_auth && st->authenticated && l->backend->identity != IDENT_XCLIENT) {
        /* the login cannot be told to a new backend leg without XCLIENT */
        smtp_close_421(s, "4.3.0", "Error: backend connection lost", REASON_BACKEND_EOF);
        return;
    }
    st->handoff_for_auth = for_auth;
    st->ho = HO_CONNECT;
    st->ehlo_xclient = false;
    if (!for_auth)
        smtp_enter_state(s, SMTP_HANDOFF);
    smtp_pause(s);
    session_backend_connect(s);
}

/* The hand-off failed. unavailable: the backend could not be reached (temporary, the client may
 * retry); otherwise it answered out of sequence (close). */
static void
handoff_fail(struct session *s, bool unavailable, const char *why)
{
    struct smtp_session *st = smtp_st(s);
    session_log(s, LOG_WARN, EV_SMTP_HANDOFF_FAILED, "backend=%s step=%d why=\"%s\"",
                session_backend_addr(s), (int)st->ho, why);
    backend_drop(s);
    if (st->handoff_for_auth) {
        sasl_exchange_wipe(&st->sasl);
        smtp_enter_state(s, SMTP_READY);
        session_replyf(s, "454 4.7.0 Temporary authentication failure\r\n");
        smtp_resume(s);
        return;
    }
    if (!unavailable) {
        smtp_close_421(s, "4.3.0", "Error: backend not ready", REASON_BACKEND_PROTOCOL);
        return;
    }
    smtp_enter_state(s, SMTP_READY);
    st->skip_line = true; /* the MAIL that asked for the backend */
    session_replyf(s, "451 4.4.0 Error: backend unavailable, try again later\r\n");
    smtp_resume(s);
}

/* "XCLIENT" plus the attributes of one half (identity.h builds the line). */
static int
xclient_build(struct session *s, enum identity_xclient_part part, char *out, size_t cap)
{
    const struct smtp_session *st = smtp_st(s);
    char port[16], dport[16];
    snprintf(port, sizeof(port), "%u", session_client_port(s));
    snprintf(dport, sizeof(dport), "%u", session_local_port(s));
    struct identity_xclient x = {
        .helo = st->helo,
        .proto = st->ehlo ? "ESMTP" : "SMTP",
        .addr = session_client_addr(s),
        .port = port,
        .name = session_client_name(s), /* a verified LDH name or [UNAVAILABLE]/[TEMPUNAVAIL] */
        .destaddr = session_local_addr(s),
        .destport = dport,
        .login = st->authenticated ? st->login : NULL,
    };
    return identity_smtp_xclient(&x, part, out, cap);
}

static void
handoff_xclient(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    char line[XCLIENT_LINE_MAX * 4];
    int n = xclient_build(s, XCLIENT_PART_ALL, line, sizeof(line));
    st->ho = HO_XCLIENT;
    if (n < 0) {
        n = xclient_build(s, XCLIENT_PART_HELO, line, sizeof(line));
        st->ho = HO_XCLIENT1;
    }
    if (n < 0) {
        handoff_fail(s, false, "XCLIENT too long");
        return;
    }
    memcpy(line + n, "\r\n", 2);
    session_backend_send(s, line, (size_t)n + 2);
}

static void
handoff_xclient2(struct session *s)
{
    char line[XCLIENT_LINE_MAX * 4];
    int n = xclient_build(s, XCLIENT_PART_REST, line, sizeof(line));
    if (n < 0) {
        handoff_fail(s, false, "XCLIENT too long");
        return;
    }
    memcpy(line + n, "\r\n", 2);
    smtp_st(s)->ho = HO_XCLIENT;
    session_backend_send(s, line, (size_t)n + 2);
}

static void
handoff_ehlo_client(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    st->ho = HO_EHLO;
    session_backend_sendf(s, "EHLO %s\r\n", st->helo[0] ? st->helo : "[UNAVAILABLE]");
}

static void
handoff_auth(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    char line[2200];
    memcpy(line, "AUTH PLAIN ", 11);
    int n = sasl_plain_encode(&st->sasl.cred, line + 11, sizeof(line) - 13);
    if (n < 0) {
        explicit_bzero(line, sizeof(line));
        handoff_fail(s, true, "credentials too long");
        return;
    }
    memcpy(line + 11 + n, "\r\n", 2);
    session_backend_send(s, line, (size_t)n + 13);
    explicit_bzero(line, sizeof(line));
    st->ho = HO_AUTH;
}

static void
handoff_done(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    st->ho = HO_DONE;
    st->backend_up = true;
    session_backend_wait(s, false);
    smtp_enter_state(s, SMTP_RELAY);
    session_set_phase(s, PHASE_COMMAND);
    session_log(s, LOG_INFO, EV_BACKEND_HANDOFF, "backend=%s identity=%s", session_backend_addr(s),
                backend_identity_name(session_listener(s)->backend->identity));
    smtp_resume(s);
}

static void
handoff_auth_result(struct session *s, int code)
{
    struct smtp_session *st = smtp_st(s);
    if (code == 235) {
        smtp_auth_succeeded(s, st->sasl.cred.user);
        session_replyf(s, "235 2.7.0 Authentication successful\r\n");
        handoff_done(s);
        return;
    }
    if (code / 100 != 5) {
        handoff_fail(s, true, "AUTH not accepted by the backend");
        return;
    }
    backend_drop(s);
    smtp_auth_failed(s);
}

/* The last line of a backend reply during the hand-off. */
static void
handoff_reply(struct session *s, int code)
{
    struct smtp_session *st = smtp_st(s);
    const struct config_backend *b = session_listener(s)->backend;
    switch (st->ho) {
    case HO_GREETING:
        if (code != 220) {
            handoff_fail(s, false, "no 220 greeting");
            return;
        }
        if (b->identity != IDENT_XCLIENT) {
            handoff_ehlo_client(s);
            return;
        }
        st->ho = HO_EHLO_MOAT;
        session_backend_sendf(s, "EHLO %s\r\n",
                              b->helo_name ? b->helo_name : session_config(s)->hostname);
        return;
    case HO_EHLO_MOAT:
        if (code != 250 || !st->ehlo_xclient) {
            handoff_fail(s, false, "EHLO without XCLIENT");
            return;
        }
        handoff_xclient(s);
        return;
    case HO_XCLIENT1:
        if (code != 220) {
            handoff_fail(s, false, "XCLIENT refused");
            return;
        }
        handoff_xclient2(s);
        return;
    case HO_XCLIENT:
        if (code != 220) {
            handoff_fail(s, false, "XCLIENT refused");
            return;
        }
        handoff_ehlo_client(s);
        return;
    case HO_EHLO:
        if (code != 250) {
            handoff_fail(s, false, "EHLO refused");
            return;
        }
        if (st->handoff_for_auth) {
            handoff_auth(s);
            return;
        }
        handoff_done(s);
        return;
    case HO_AUTH:
        handoff_auth_result(s, code);
        return;
    case HO_NONE:
    case HO_CONNECT:
    case HO_DONE:
        handoff_fail(s, false, "unexpected reply");
        return;
    }
}

void
smtp_on_backend(struct session *s, enum backend_event ev)
{
    struct smtp_session *st = smtp_st(s);
    switch (ev) {
    case BACKEND_CONNECTED:
        st->ho = HO_GREETING;
        session_backend_wait(s, true);
        return;
    case BACKEND_FAILED:
        handoff_fail(s, true, "unavailable");
        return;
    case BACKEND_EOF:
    case BACKEND_ERROR:
        if (st->ho != HO_DONE) {
            handoff_fail(s, st->ho == HO_GREETING, "backend closed");
            return;
        }
        if (st->state == SMTP_DATA || st->state == SMTP_DATA_CHECK) {
            session_replyf(s, "451 4.4.0 Error: backend failure, message not accepted\r\n");
            smtp_enter_state(s, SMTP_CLOSING);
            session_close(s, REASON_BACKEND_EOF);
            return;
        }
        if (smtp_fifo_empty(st) && st->state == SMTP_RELAY) {
            backend_drop(s); /* idle: a new leg at the next MAIL */
            smtp_enter_state(s, SMTP_READY);
            return;
        }
        smtp_close_421(s, "4.4.0", "Error: backend connection lost", REASON_BACKEND_EOF);
        return;
    case BACKEND_TIMEOUT:
        if (st->ho != HO_DONE && st->handoff_for_auth) {
            handoff_fail(s, true, "timeout");
            return;
        }
        smtp_close_421(s, "4.4.2", "Error: timeout exceeded", REASON_BACKEND_TIMEOUT);
        return;
    }
}

/* A backend 5xx to MAIL or RCPT counts toward max_errors like moat's own refusals: a client
 * cannot probe addresses through the backend without end. */
static void
backend_refusal_count(struct session *s, int code)
{
    if (code / 100 == 5 && session_count_error(s))
        smtp_close_421(s, "4.7.0", "Error: too many errors", REASON_TOO_MANY_ERRORS);
}

/* The effect of a complete backend reply on the transaction we track. */
static void
relay_reply_done(struct session *s, enum smtp_pending what, int code)
{
    struct smtp_session *st = smtp_st(s);
    bool ok = code / 100 == 2;
    switch (what) {
    case PEND_MAIL:
        st->in_mail = ok;
        if (!ok)
            st->rcpt_count = 0;
        backend_refusal_count(s, code);
        return;
    case PEND_RCPT:
        if (!ok && st->rcpt_count > 0)
            st->rcpt_count--;
        if (ok)
            session_rate_count(s, CLIENT_RATE_RECIPIENTS);
        backend_refusal_count(s, code);
        return;
    case PEND_RSET:
    case PEND_EHLO:
        st->in_mail = false;
        st->rcpt_count = 0;
        return;
    case PEND_DATA:
        st->data_wait = false;
        if (code != 354)
            return;
        smtp_data_init(&st->data, session_listener(s)->bare_newline == BARE_NEWLINE_REJECT,
                       session_listener(s)->limits.message_size_bytes);
        st->data_dropped = false;
        smtp_dns_data_start(s, st); /* Received-SPF first, before any client byte */
        smtp_enter_state(s, SMTP_DATA);
        session_set_phase(s, PHASE_DATA);
        return;
    case PEND_DOT:
        st->in_mail = false;
        st->rcpt_count = 0;
        if (ok)
            session_rate_count(s, CLIENT_RATE_MESSAGES);
        session_log(s, LOG_INFO, EV_MESSAGE, "reply=%d size=%llu bare_lf=%llu", code,
                    (unsigned long long)st->data.size, (unsigned long long)st->data.bare_lf);
        return;
    case PEND_OTHER:
        return;
    }
}

static void
relay_line(struct session *s, const char *line, size_t n, int code, bool last)
{
    struct smtp_session *st = smtp_st(s);
    if (smtp_fifo_empty(st)) { /* unsolicited (e.g. the backend's own 421): pass on, close */
        session_reply(s, line, n);
        session_reply(s, "\r\n", 2);
        if (last) {
            smtp_enter_state(s, SMTP_CLOSING);
            session_close(s, REASON_BACKEND_EOF);
        }
        return;
    }
    enum smtp_pending what = st->fifo[st->fifo_head];
    if (what != PEND_EHLO) {
        session_reply(s, line, n);
        session_reply(s, "\r\n", 2);
    } else if (last && code == 250) {
        smtp_reply_ehlo(s); /* moat's own keywords, never the backend's */
    } else if (last) {
        session_reply(s, line, n);
        session_reply(s, "\r\n", 2);
    }
    if (!last)
        return;
    fifo_pop(st);
    if (code == 421) {
        /* the backend is closing: so does the session (a fresh leg would reset the backend's
         * per-connection limits) */
        session_log(s, LOG_INFO, EV_BACKEND_421, "backend=%s", session_backend_addr(s));
        smtp_enter_state(s, SMTP_CLOSING);
        session_close(s, REASON_BACKEND_EOF);
        return;
    }
    relay_reply_done(s, what, code);
    if (st->state == SMTP_CLOSING)
        return;
    if (smtp_fifo_empty(st))
        session_backend_wait(s, false);
    smtp_resume(s);
}

size_t
smtp_on_backend_input(struct session *s, const char *p, size_t n)
{
    struct smtp_session *st = smtp_st(s);
    size_t len, used;
    bool crlf;
    switch (buf_find_line(p, n, SMTP_REPLY_LINE_MAX, &len, &used, &crlf)) {
    case LINE_MORE:
        return 0;
    case LINE_TOO_LONG:
        smtp_close_421(s, "4.3.0", "Error: backend protocol error", REASON_BACKEND_PROTOCOL);
        return n;
    case LINE_OK:
        break;
    }
    if (len > 0 && p[len - 1] == '\r')
        len--;
    int code;
    bool last;
    if (smtp_reply_line(p, len, &code, &last) != SMTP_PARSE_OK) {
        session_log_peer(s, LOG_WARN, EV_BACKEND_BAD_REPLY, "line", p, len);
        smtp_close_421(s, "4.3.0", "Error: backend protocol error", REASON_BACKEND_PROTOCOL);
        return used;
    }
    if (st->ho == HO_DONE) {
        relay_line(s, p, len, code, last);
        return used;
    }
    if (st->ho == HO_EHLO_MOAT && len >= 11 && smtp_equal_nocase(p + 4, 7, "XCLIENT", 7))
        st->ehlo_xclient = true;
    if (last)
        handoff_reply(s, code);
    /* a dropped leg took its input buffer with it: nothing is left to consume */
    return st->ho == HO_NONE ? 0 : used;
}

int
smtp_relay_command(struct session *s, const char *line, size_t n, enum smtp_pending what)
{
    struct smtp_session *st = smtp_st(s);
    if (st->fifo_len >= SMTP_FIFO_MAX) { /* smtp.c stops reading first: never a peer's doing */
        smtp_close_421(s, "4.3.0", "Error: too many pending commands", REASON_PROTOCOL_ERROR);
        return -1;
    }
    if (session_backend_send(s, line, n) != 0 || session_backend_send(s, "\r\n", 2) != 0)
        return -1;
    fifo_push(st, what);
    if (what == PEND_DATA)
        st->data_wait = true;
    session_backend_wait(s, true);
    return 0;
}

/* The real end of data: the backend gets the final dot, or the client the refusal. */
static void
data_end(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    const char *refusal = NULL;
    switch (st->data.error) {
    case SMTP_DATA_OK:
        break;
    case SMTP_DATA_BARE_LF:
        refusal = "550 5.5.2 Error: bare <LF> received";
        break;
    case SMTP_DATA_BARE_CR:
        refusal = "550 5.5.2 Error: bare <CR> received";
        break;
    case SMTP_DATA_NUL:
        refusal = "550 5.6.0 Error: NUL character in message";
        break;
    case SMTP_DATA_TOO_BIG:
        refusal = "552 5.3.4 Error: message file too big";
        break;
    }
    session_set_phase(s, PHASE_COMMAND);
    /* bare LF/CR in DATA is how smuggling is tried; the canonicaliser already defused it */
    if (st->data.bare_lf > 0 || st->data.error == SMTP_DATA_BARE_CR)
        session_log(s, LOG_INFO, EV_SMUGGLING_ATTEMPT, "bare_lf=%llu bare_cr=%d",
                    (unsigned long long)st->data.bare_lf, st->data.error == SMTP_DATA_BARE_CR);
    if (refusal == NULL) {
        smtp_dns_data_end(s, false);
        return;
    }
    session_log(s, LOG_INFO, EV_MESSAGE_REFUSED, "why=%s size=%llu",
                smtp_data_error_name(st->data.error), (unsigned long long)st->data.size);
    smtp_enter_state(s, SMTP_READY); /* the backend leg is gone: the next MAIL opens one */
    session_replyf(s, "%s\r\n", refusal);
}

void
smtp_data_deliver(struct session *s)
{
    smtp_enter_state(s, SMTP_RELAY);
    smtp_relay_command(s, ".", 1, PEND_DOT);
}

void
smtp_data_refuse(struct session *s, const char *reply)
{
    backend_drop(s); /* no final dot: the backend discards what it has of the message */
    smtp_enter_state(s, SMTP_READY);
    session_replyf(s, "%s\r\n", reply);
}

size_t
smtp_data_input(struct session *s, const char *p, size_t n)
{
    struct smtp_session *st = smtp_st(s);
    char out[8192];
    size_t cap = session_listener(s)->limits.backend_buffer_bytes;
    size_t out_cap = MOAT_MIN(sizeof(out), MOAT_MAX(cap / 2, (size_t)SMTP_DATA_EXPANSION));
    size_t done = 0;
    while (done < n) {
        if (!st->data_dropped && session_backend_pending(s) + out_cap > cap) {
            session_input_pause_until_backend_drained(s);
            return done;
        }
        size_t used, olen;
        enum smtp_data_status r =
            smtp_data_feed(&st->data, p + done, n - done, out, out_cap, &used, &olen);
        done += used;
        if (st->data.error != SMTP_DATA_OK && !st->data_dropped) {
            st->data_dropped = true; /* no final dot: the backend discards the message */
            backend_drop(s);
        } else if (olen > 0 && !st->data_dropped) {
            if (session_backend_send(s, out, olen) != 0)
                return done;
            session_uribl_feed(s, out, olen);
        }
        if (r == SMTP_DATA_END) {
            data_end(s);
            return done;
        }
    }
    return done;
}
