/*
 * session.c: a client session's moving parts, which its protocol and its services drive: the
 * phase and the timer it arms, output to either leg, the dispatch of client input to the
 * protocol, STARTTLS, the byte relay and the one idempotent close. Calls only down (connections,
 * the admission counts, the loop the worker handed down); what drives it (accept, the legs' and
 * the timer's events, the teardown) is session_events.c.
 */
#include <stdarg.h>
#include <stdio.h>

#include "admission.h"
#include "log.h"
#include "session.h"
#include "session_env.h"
#include "stats.h"

#define LINGER_S 2.0

/* [timeouts] relay_idle, else the protocol's own default, else the command timeout. */
static uint32_t
relay_idle_default_ms(const struct session *s)
{
    const struct config_timeouts *t = &s->listener->timeouts;
    if (t->relay_idle_ms != 0)
        return t->relay_idle_ms;
    if (s->proto->relay_idle_ms != 0)
        return s->proto->relay_idle_ms;
    return t->command_ms;
}

/* --- phases and the timer --- */

/* TLS handshakes in progress are counted process-wide for max_tls_handshakes. */
static void
session_count_handshake(struct session *s, bool in_handshake)
{
    if (s->in_handshake == in_handshake)
        return;
    s->in_handshake = in_handshake;
    if (in_handshake)
        admission_handshake_begin();
    else
        admission_handshake_end();
}

void
session_set_phase(struct session *s, enum session_phase p)
{
    const struct config_timeouts *t = &s->listener->timeouts;
    double now = ev_now(s->env->loop);
    s->phase = p;
    if (p == PHASE_COMMAND || p == PHASE_DATA || p == PHASE_RELAY)
        s->past_preauth = true;
    /* a handshake counts once the client's first bytes arrived (session_tls_started) */
    session_count_handshake(s, p == PHASE_HANDSHAKE && s->client.tls != NULL);
    s->phase_deadline = 0;
    s->idle_s = 0;
    switch (p) {
    case PHASE_HANDSHAKE:
        /* until the first byte: a silent socket goes quickly */
        s->phase_deadline = now + MOAT_MIN(t->tls_first_byte_ms, t->handshake_ms) / 1000.0;
        break;
    case PHASE_PREAUTH:
    case PHASE_AUTH:
    case PHASE_CONNECT:
    case PHASE_HANDOFF:
        s->idle_s = t->preauth_idle_ms / 1000.0;
        break;
    case PHASE_COMMAND:
        s->idle_s = t->command_ms / 1000.0;
        break;
    case PHASE_DATA:
        s->idle_s = t->data_ms / 1000.0;
        break;
    case PHASE_RELAY:
        s->idle_s = relay_idle_default_ms(s) / 1000.0;
        break;
    case PHASE_ACCEPT:
    case PHASE_CLOSING:
        break;
    }
    /* a fresh phase starts its idle clock now */
    s->client.last_read = now;
    session_timer_arm(s);
}

/* The client's first handshake bytes arrived: the handshake counts for max_tls_handshakes from
 * now, and gets its whole (absolute) time from now on. */
void
session_tls_started(struct session *s)
{
    if (s->phase != PHASE_HANDSHAKE)
        return;
    session_count_handshake(s, true);
    s->phase_deadline = ev_now(s->env->loop) + s->listener->timeouts.handshake_ms / 1000.0;
    session_timer_arm(s);
}

/* The pre-auth phases, until the client logged in or its session was handed off: a backend leg
 * re-opened later (PHASE_CONNECT, PHASE_HANDOFF) is not pre-auth any more. */
bool
session_in_preauth(const struct session *s)
{
    if (s->past_preauth || s->user[0] != '\0')
        return false;
    switch (s->phase) {
    case PHASE_ACCEPT:
    case PHASE_HANDSHAKE:
    case PHASE_PREAUTH:
    case PHASE_AUTH:
    case PHASE_CONNECT:
    case PHASE_HANDOFF:
        return true;
    case PHASE_COMMAND:
    case PHASE_DATA:
    case PHASE_RELAY:
    case PHASE_CLOSING:
        return false;
    }
    return false;
}

double
session_last_activity(const struct session *s)
{
    double a = s->client.last_read;
    if (s->relaying && s->backend.last_read > a)
        a = s->backend.last_read;
    return a;
}

static double
min_deadline(double a, double b)
{
    if (a == 0)
        return b;
    if (b == 0)
        return a;
    return a < b ? a : b;
}

static double
next_deadline(const struct session *s)
{
    if (s->closing)
        return s->linger_deadline;
    double d = s->phase_deadline;
    if (s->idle_s > 0)
        d = min_deadline(d, session_last_activity(s) + s->idle_s);
    if (session_in_preauth(s) && s->listener->timeouts.preauth_total_ms > 0)
        d = min_deadline(d, s->total_deadline);
    if (s->backend_wait_since > 0)
        d = min_deadline(d,
                         s->backend_wait_since + s->listener->timeouts.backend_reply_ms / 1000.0);
    d = min_deadline(d, s->connect_deadline);
    d = min_deadline(d, s->proto_deadline);
    d = min_deadline(d, min_deadline(s->hold_until, s->auth_deadline)); /* session_auth.c */
    return d;
}

void
session_timer_arm(struct session *s)
{
    struct ev_loop *loop = s->env->loop;
    ev_timer_stop(loop, &s->timer);
    double d = next_deadline(s);
    if (d == 0)
        return;
    double after = d - ev_now(loop);
    ev_timer_set(&s->timer, after > 0.001 ? after : 0.001, 0.);
    ev_timer_start(loop, &s->timer);
}

void
session_backend_wait(struct session *s, bool waiting)
{
    s->backend_wait_since = waiting ? ev_now(s->env->loop) : 0;
    session_timer_arm(s);
}

/* --- output --- */

/* Queue bytes on one leg; a full buffer ends the session (a peer that does not read). */
static int
session_write(struct session *s, struct conn *c, const char *p, size_t n)
{
    if (s->closing)
        return -1;
    if (conn_write(c, p, n) != 0) {
        session_close(s, REASON_BUFFER_FULL);
        return -1;
    }
    return 0;
}

static int session_vwrite(struct session *s, struct conn *c, const char *fmt, va_list ap)
    MOAT_PRINTF(3, 0);

static int
session_vwrite(struct session *s, struct conn *c, const char *fmt, va_list ap)
{
    char line[2048];
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        /* never a cut line (it would lose its CRLF): end the session instead */
        session_log(s, LOG_WARN, EV_REPLY_TOO_LONG, "leg=%s",
                    c == &s->client ? "client" : "backend");
        session_close(s, REASON_INTERNAL);
        return -1;
    }
    return session_write(s, c, line, (size_t)n);
}

int
session_reply(struct session *s, const char *p, size_t n)
{
    return session_write(s, &s->client, p, n);
}

int
session_reply_line(struct session *s, const char *prefix, const char *text, size_t n)
{
    if (session_write(s, &s->client, prefix, strlen(prefix)) != 0 ||
        session_write(s, &s->client, text, n) != 0)
        return -1;
    return session_write(s, &s->client, "\r\n", 2);
}

int
session_replyf(struct session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = session_vwrite(s, &s->client, fmt, ap);
    va_end(ap);
    return r;
}

int
session_backend_send(struct session *s, const char *p, size_t n)
{
    return session_write(s, &s->backend, p, n);
}

int
session_backend_sendf(struct session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = session_vwrite(s, &s->backend, fmt, ap);
    va_end(ap);
    return r;
}

/* --- input dispatch and the relay --- */

void
session_relay_pump(struct conn *from, struct conn *to)
{
    while (from->in.len > 0 && to->state != CONN_CLOSED) {
        size_t room = buf_room(&to->out);
        if (room == 0)
            break;
        size_t n = MOAT_MIN(room, from->in.len);
        if (conn_write(to, from->in.data, n) != 0)
            break;
        conn_consume(from, n);
    }
}

/* Client to backend; once a half-closed client's last byte is queued, the backend gets FIN. */
void
session_relay_from_client(struct session *s)
{
    session_relay_pump(&s->client, &s->backend);
    if (s->client_eof && s->client.in.len == 0)
        conn_shutdown_write(&s->backend);
}

void
session_relay_both(struct session *s)
{
    session_relay_from_client(s);
    session_relay_pump(&s->backend, &s->client);
}

/* Does the client still wait for something it asked for before closing its side? A backend
 * reply on its way, input the protocol will read once resumed, a delayed reply, a backend being
 * connected for it, the end of a message waiting for DNS answers. */
static bool
session_owes_client(const struct session *s)
{
    return s->backend_wait_since > 0 || s->connect_deadline > 0 || s->kicked || s->hold_until > 0 ||
           (s->input_paused && s->client.in.len > 0) || s->dns_owes_client;
}

/* After a half-close, close as soon as nothing is owed. Bytes that never made a whole command
 * are dropped with the connection. */
void
session_close_if_done(struct session *s)
{
    if (s->client_eof && !s->closing && !s->relaying && !session_owes_client(s))
        session_close(s, REASON_CLIENT_EOF);
}

/* The client closed its side. In the byte relay the backend is half-closed too and its answer
 * still flows back; otherwise what the client already sent is answered first. */
void
session_client_eof(struct session *s)
{
    s->client_eof = true;
    if (s->relaying) {
        session_relay_from_client(s);
        return;
    }
    session_dispatch(s);
    session_close_if_done(s);
}

void
session_relay(struct session *s)
{
    if (s->closing)
        return;
    s->relaying = true;
    s->backend_wait_since = 0;
    session_set_phase(s, PHASE_RELAY);
    conn_pause_read(&s->client, false);
    /* inside an input callback the caller still has to consume its bytes: relay afterwards */
    if (!s->in_dispatch && !s->in_backend_dispatch)
        session_relay_both(s);
}

static void
session_switch_tls(struct session *s)
{
    s->starttls_pending = false;
    session_set_phase(s, PHASE_HANDSHAKE);
    if (conn_start_tls(&s->client, s->tls_ctx, s->proto->alpn, s->conf->tls.alpn_strict) != 0) {
        session_close(s, REASON_INTERNAL);
        return;
    }
    s->starttls_pending = true; /* until TLS_READY: no input goes to the protocol */
}

void
session_dispatch(struct session *s)
{
    if (s->in_dispatch) {
        s->redispatch = true;
        return;
    }
    s->in_dispatch = true;
    conn_cork(&s->client); /* the answers to this batch of input leave as one write */
    do {
        s->redispatch = false;
        while (!s->closing && !s->relaying && !s->input_paused && !s->starttls_pending &&
               s->hold_until == 0 && s->client.in.len > 0) {
            size_t used = s->proto->on_client_input(s, s->client.in.data, s->client.in.len);
            if (s->closing)
                break;
            MOAT_ASSERT(used <= s->client.in.len);
            if (used == 0) {
                if (buf_room(&s->client.in) == 0 && !s->input_paused && !s->relaying)
                    session_close(s, REASON_LINE_TOO_LONG);
                break;
            }
            conn_consume(&s->client, used);
        }
    } while (s->redispatch && !s->closing);
    s->in_dispatch = false;
    conn_uncork(&s->client);
    if (s->closing)
        return;
    if (s->starttls_pending && s->phase != PHASE_HANDSHAKE)
        session_switch_tls(s);
    else if (s->relaying)
        session_relay_both(s);
    else
        session_close_if_done(s);
}

/* max_tls_handshakes protects moat's CPU: STARTTLS is refused for now while it is reached
 * (always enforced, like at accept). Approximate across threads, which is all it needs. */
static bool
session_tls_busy(struct session *s)
{
    uint32_t max = s->conf->max_tls_handshakes;
    if (max == 0 || admission_handshakes() < max)
        return false;
    session_log(s, LOG_INFO, EV_REFUSED, "reason=max_tls_handshakes client=%s command=starttls",
                s->client_addr);
    stats_refusal(s->stats, STAT_REFUSED_LIMIT);
    return true;
}

enum start_tls_result
session_start_tls(struct session *s)
{
    if (s->tls_ctx == NULL || conn_is_tls(&s->client) || s->client.tls != NULL ||
        s->starttls_pending)
        return START_TLS_UNAVAILABLE;
    if (session_tls_busy(s))
        return START_TLS_BUSY;
    /* The switch happens when the protocol returns from its input callback (after it queued
     * its go-ahead reply), so the command line is consumed first and every byte after it is
     * then discarded. Outside a callback the worker runs the switch on its next turn. */
    s->starttls_pending = true;
    if (!s->in_dispatch)
        s->env->kick(s->env, s);
    return START_TLS_OK;
}

void
session_input_pause(struct session *s)
{
    s->input_paused = true;
}

void
session_input_resume(struct session *s)
{
    if (!s->input_paused || s->closing)
        return;
    s->input_paused = false;
    if (s->in_dispatch)
        s->redispatch = true;
    else
        s->env->kick(s->env, s);
}

size_t
session_backend_pending(const struct session *s)
{
    return conn_out_pending(&s->backend);
}

void
session_input_pause_until_backend_drained(struct session *s)
{
    if (conn_out_pending(&s->backend) == 0)
        return;
    s->input_paused = true;
    s->resume_on_backend_drain = true;
}

void
session_kick_run(struct session *s)
{
    if (!s->closing)
        session_dispatch(s);
}

/* --- close --- */

void
session_close(struct session *s, enum close_reason r)
{
    if (s->closing)
        return;
    /* the last answers, the close_notify and the FIN leave together; what was answered goes
     * out before the close decides whether to linger */
    conn_hold_until_close(&s->client);
    conn_uncork(&s->client);
    s->closing = true;
    s->reason = r;
    s->close_phase = s->phase;
    session_count_handshake(s, false);
    s->phase = PHASE_CLOSING;
    conn_close(&s->backend, !close_reason_orderly(r));
    conn_pause_read(&s->client, true);
    if (conn_out_pending(&s->client) > 0 && s->client.state != CONN_CLOSED &&
        s->client.error == NULL) {
        /* flush the last reply, bounded */
        s->linger_deadline = ev_now(s->env->loop) + LINGER_S;
        session_timer_arm(s);
        return;
    }
    s->env->defer_free(s->env, s);
}

/* --- logging: one line per event, which moves the /metrics counter events.h ties to it --- */

void
session_log(struct session *s, int level, enum log_event ev, const char *fmt, ...)
{
    stats_mark(s->stats, log_event_mark(ev)); /* the log line and the counter never disagree */
    struct log_line l;
    log_begin(&l, (enum log_level)level, ev);
    if (l.skip)
        return;
    log_kv(&l, "sid", "%s", s->sid);
    if (fmt != NULL && fmt[0] != '\0') {
        char detail[512];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        if (n > 0)
            log_append_trusted(&l, detail, MOAT_MIN((size_t)n, sizeof(detail) - 1));
    }
    log_end(&l);
}

void
session_log_peer(struct session *s, int level, enum log_event ev, const char *key, const char *p,
                 size_t n)
{
    stats_mark(s->stats, log_event_mark(ev));
    struct log_line l;
    log_begin(&l, (enum log_level)level, ev);
    log_kv(&l, "sid", "%s", s->sid);
    log_kv_str(&l, key, p, n);
    log_end(&l);
}
