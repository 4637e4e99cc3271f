/*
 * session.c: one client session from accept to its closing log line. Owns both connection
 * legs, the single per-session timer (phase deadlines, idle, backend waits), the dispatch of
 * client input to the protocol, the byte relay and the one idempotent close. Memory is freed
 * later by the worker, never inside the callback that decided to close.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "dnscheck.h"
#include "log.h"
#include "session.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

#define LINGER_S 2.0

static void on_client_event(struct conn *c, enum conn_event ev);
static void on_backend_event(struct conn *c, enum conn_event ev);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);

static void
addr_to_text(const struct sockaddr_storage *ss, char *out, size_t cap, unsigned *port_out)
{
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], out, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, &a->sin6_addr, out, (socklen_t)cap);
        *port_out = ntohs(a->sin6_port);
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, out, (socklen_t)cap);
        *port_out = ntohs(a->sin_port);
    } else {
        snprintf(out, cap, "unknown");
        *port_out = 0;
    }
}

/* The ALPN id (RFC 7301 registry) a listener's protocol answers to. */
static const char *
listener_alpn(const struct config_listener *l)
{
    switch (l->proto) {
    case LPROTO_SMTP:
    case LPROTO_SUBMISSION:
        return "smtp";
    case LPROTO_IMAP:
        return "imap";
    case LPROTO_POP3:
        return "pop3";
    }
    return NULL;
}

static uint32_t
relay_idle_default_ms(const struct session *s)
{
    const struct config_timeouts *t = &s->listener->timeouts;
    if (t->relay_idle_ms != 0)
        return t->relay_idle_ms;
    switch (s->listener->proto) {
    case LPROTO_IMAP:
        return 31u * 60u * 1000u; /* RFC 9051 §5.4: at least 30 minutes */
    case LPROTO_POP3:
        return 10u * 60u * 1000u; /* RFC 1939 §3: at least 10 minutes */
    case LPROTO_SMTP:
    case LPROTO_SUBMISSION:
        return t->command_ms;
    }
    return t->command_ms;
}

struct session *
session_new(struct worker *w, int fd, const struct sockaddr *peer, socklen_t peer_len,
            struct config *conf, const struct config_listener *l, struct tls_ctx *tls)
{
    static _Atomic uint32_t next_id;
    struct session *s = xcalloc(1, sizeof(*s));
    s->id = atomic_fetch_add(&next_id, 1) + 1;
    /* ids are unique in the process; the random-looking form keeps logs greppable */
    snprintf(s->sid, sizeof(s->sid), "%08x", (unsigned)(s->id * 2654435761u));
    s->worker = w;
    s->conf = conf;
    s->listener = l;
    s->stats = stats_find(l->name);
    stats_session_open(s->stats);
    s->tls_ctx = tls;
    s->proto = protocol_for(l->proto, l->tls);
    if (s->proto->state_size > 0)
        s->proto_state = xcalloc(1, s->proto->state_size);
    struct ev_loop *loop = worker_loop(w);
    s->start = ev_now(loop);
    memcpy(&s->peer, peer, peer_len);
    s->peer_len = peer_len;
    s->local_len = sizeof(s->local);
    if (getsockname(fd, (struct sockaddr *)&s->local, &s->local_len) != 0)
        s->local_len = 0;
    addr_to_text(&s->peer, s->client_addr, sizeof(s->client_addr), &s->client_port);
    addr_to_text(&s->local, s->local_addr, sizeof(s->local_addr), &s->local_port);
    snprintf(s->backend_addr, sizeof(s->backend_addr), "-");
    conn_init(&s->client, loop, l->limits.client_buffer_bytes, l->limits.client_buffer_bytes,
              on_client_event, s);
    conn_init(&s->backend, loop, l->limits.backend_buffer_bytes, l->limits.backend_buffer_bytes,
              on_backend_event, s);
    ev_init(&s->timer, on_timer);
    s->timer.data = s;
    conn_attach(&s->client, fd);
    s->total_deadline = s->start + l->timeouts.preauth_total_ms / 1000.0;
    s->dns = dnscheck_start(s); /* DNS checks run in parallel with the greeting */
    if (l->tls == LTLS_IMPLICIT) {
        session_set_phase(s, PHASE_HANDSHAKE);
        if (conn_start_tls(&s->client, tls, listener_alpn(s->listener), s->conf->tls.alpn_strict) !=
            0) {
            session_close(s, REASON_INTERNAL);
            return s;
        }
    } else {
        session_set_phase(s, PHASE_PREAUTH);
        s->proto->on_start(s);
    }
    return s;
}

void
session_free(struct session *s)
{
    MOAT_ASSERT(s->closed);
    dnscheck_free(s->dns);
    free(s->proto_state);
    if (s->tls_ctx != NULL)
        tls_ctx_unref(s->tls_ctx);
    config_unref(s->conf);
    free(s);
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

/* The configuration name of the idle timeout of phase p, for the closing line. */
static const char *
idle_timeout_name(enum session_phase p)
{
    switch (p) {
    case PHASE_COMMAND:
        return "command";
    case PHASE_DATA:
        return "data";
    case PHASE_RELAY:
        return "relay_idle";
    case PHASE_ACCEPT:
    case PHASE_HANDSHAKE:
    case PHASE_PREAUTH:
    case PHASE_AUTH:
    case PHASE_CONNECT:
    case PHASE_HANDOFF:
    case PHASE_CLOSING:
        break;
    }
    return "preauth_idle";
}

void
session_set_phase(struct session *s, enum session_phase p)
{
    const struct config_timeouts *t = &s->listener->timeouts;
    double now = ev_now(worker_loop(s->worker));
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
static void
session_tls_started(struct session *s)
{
    if (s->phase != PHASE_HANDSHAKE)
        return;
    session_count_handshake(s, true);
    s->phase_deadline =
        ev_now(worker_loop(s->worker)) + s->listener->timeouts.handshake_ms / 1000.0;
    session_timer_arm(s);
}

/* The name of the timeout that ends the handshake phase now. */
static const char *
handshake_timeout_name(const struct session *s)
{
    const struct config_timeouts *t = &s->listener->timeouts;
    return s->client.tls == NULL && t->tls_first_byte_ms < t->handshake_ms ? "tls_first_byte"
                                                                           : "handshake";
}

/* The pre-auth phases, until the client logged in or its session was handed off: a backend leg
 * re-opened later (PHASE_CONNECT, PHASE_HANDOFF) is not pre-auth any more. */
static bool
in_preauth(const struct session *s)
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

static double
last_activity(const struct session *s)
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
        d = min_deadline(d, last_activity(s) + s->idle_s);
    if (in_preauth(s) && s->listener->timeouts.preauth_total_ms > 0)
        d = min_deadline(d, s->total_deadline);
    if (s->backend_wait_since > 0)
        d = min_deadline(d,
                         s->backend_wait_since + s->listener->timeouts.backend_reply_ms / 1000.0);
    d = min_deadline(d, s->connect_deadline);
    d = min_deadline(d, s->proto_deadline);
    d = min_deadline(d, session_auth_next_deadline(s));
    return d;
}

void
session_timer_arm(struct session *s)
{
    struct ev_loop *loop = worker_loop(s->worker);
    ev_timer_stop(loop, &s->timer);
    double d = next_deadline(s);
    if (d == 0)
        return;
    double after = d - ev_now(loop);
    ev_timer_set(&s->timer, after > 0.001 ? after : 0.001, 0.);
    ev_timer_start(loop, &s->timer);
}

/* In the relay the client's stream belongs to the backend: a farewell only where the protocol
 * allows unsolicited lines, and only between the backend's lines (a backend silent for the
 * whole idle period after a literal's "{n}" line is not told apart: that is a broken backend). */
static bool
farewell_allowed(const struct session *s)
{
    if (s->proto->farewell == NULL || s->phase == PHASE_HANDSHAKE || s->starttls_pending)
        return false;
    if (!s->relaying)
        return true;
    return s->proto->farewell_in_relay && s->client.last_out == '\n' &&
           buf_room(&s->client.out) >= 128;
}

/* Say goodbye in the protocol's words, then close. */
static void
session_end(struct session *s, enum close_reason r)
{
    if (s->closing)
        return;
    if (farewell_allowed(s))
        s->proto->farewell(s, r);
    session_close(s, r);
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct session *s = w->data;
    double now = ev_now(loop);
    if (s->closing) {
        if (now >= s->linger_deadline)
            session_finish(s);
        else
            session_timer_arm(s);
        return;
    }
    if (s->proto_deadline > 0 && now >= s->proto_deadline) {
        s->proto_deadline = 0;
        s->proto->on_timer(s);
        if (!s->closing)
            session_timer_arm(s);
        return;
    }
    if (session_auth_on_timer(s, now)) {
        if (!s->closing)
            session_timer_arm(s);
        return;
    }
    if (s->connect_deadline > 0 && now >= s->connect_deadline) {
        backend_attempt_failed(s, "connect timeout");
        if (!s->closing)
            session_timer_arm(s);
        return;
    }
    if (s->phase_deadline > 0 && now >= s->phase_deadline) {
        s->timeout_name = s->phase == PHASE_HANDSHAKE ? handshake_timeout_name(s) : "preauth_total";
        session_end(s,
                    s->phase == PHASE_HANDSHAKE ? REASON_HANDSHAKE_TIMEOUT : REASON_TOTAL_TIMEOUT);
        return;
    }
    if (in_preauth(s) && s->listener->timeouts.preauth_total_ms > 0 && now >= s->total_deadline) {
        s->timeout_name = "preauth_total";
        session_end(s, REASON_TOTAL_TIMEOUT);
        return;
    }
    if (s->backend_wait_since > 0 &&
        now >= s->backend_wait_since + s->listener->timeouts.backend_reply_ms / 1000.0) {
        s->backend_wait_since = 0;
        s->timeout_name = "backend_reply";
        s->proto->on_backend(s, BACKEND_TIMEOUT);
        if (!s->closing)
            session_timer_arm(s);
        return;
    }
    if (s->idle_s > 0 && now >= last_activity(s) + s->idle_s) {
        s->timeout_name = idle_timeout_name(s->phase);
        session_end(s, REASON_IDLE_TIMEOUT);
        return;
    }
    session_timer_arm(s);
}

void
session_backend_wait(struct session *s, bool waiting)
{
    s->backend_wait_since = waiting ? ev_now(worker_loop(s->worker)) : 0;
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
        session_log(s, LOG_WARN, "reply_too_long", "leg=%s",
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

/* --- input dispatch --- */

static void session_dispatch(struct session *s);

static void
relay_pump(struct conn *from, struct conn *to)
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
static void
relay_from_client(struct session *s)
{
    relay_pump(&s->client, &s->backend);
    if (s->client_eof && s->client.in.len == 0)
        conn_shutdown_write(&s->backend);
}

static void
session_relay_both(struct session *s)
{
    relay_from_client(s);
    relay_pump(&s->backend, &s->client);
}

/* Does the client still wait for something it asked for before closing its side? A backend
 * reply on its way, input the protocol will read once resumed, a delayed reply, a backend being
 * connected for it, the end of a message waiting for DNS answers. */
static bool
session_owes_client(const struct session *s)
{
    return s->backend_wait_since > 0 || s->connect_deadline > 0 || s->kicked || s->hold_until > 0 ||
           (s->input_paused && s->client.in.len > 0) || dnscheck_owes_client(s->dns);
}

/* After a half-close, close as soon as nothing is owed. Bytes that never made a whole command
 * are dropped with the connection. */
static void
session_close_if_done(struct session *s)
{
    if (s->client_eof && !s->closing && !s->relaying && !session_owes_client(s))
        session_close(s, REASON_CLIENT_EOF);
}

/* The client closed its side. In the byte relay the backend is half-closed too and its answer
 * still flows back; otherwise what the client already sent is answered first. */
static void
session_client_eof(struct session *s)
{
    s->client_eof = true;
    if (s->relaying) {
        relay_from_client(s);
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
    if (conn_start_tls(&s->client, s->tls_ctx, listener_alpn(s->listener),
                       s->conf->tls.alpn_strict) != 0) {
        session_close(s, REASON_INTERNAL);
        return;
    }
    s->starttls_pending = true; /* until TLS_READY: no input goes to the protocol */
}

static void
session_dispatch(struct session *s)
{
    if (s->in_dispatch) {
        s->redispatch = true;
        return;
    }
    s->in_dispatch = true;
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
    session_log(s, LOG_INFO, "refused", "reason=max_tls_handshakes client=%s command=starttls",
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
        worker_kick(s->worker, s);
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
        worker_kick(s->worker, s);
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

/* --- events --- */

static void
client_tls_ready(struct session *s)
{
    s->tls_version = tls_version(s->client.tls);
    s->tls_cipher = tls_cipher(s->client.tls);
    bool was_starttls = s->starttls_pending;
    s->starttls_pending = false;
    stats_add(s->stats, STAT_TLS_HANDSHAKES, 1);
    if (s->client.discarded_at_starttls > 0)
        stats_refusal(s->stats, STAT_REFUSED_STARTTLS_INJECTION);
    if (s->client.discarded_at_starttls > 0)
        session_log(s, LOG_INFO, "starttls_discard", "bytes=%llu",
                    (unsigned long long)s->client.discarded_at_starttls);
    session_set_phase(s, PHASE_PREAUTH);
    s->total_deadline =
        ev_now(worker_loop(s->worker)) + s->listener->timeouts.preauth_total_ms / 1000.0;
    if (was_starttls && s->proto->on_tls_ready != NULL)
        s->proto->on_tls_ready(s);
    else
        s->proto->on_start(s);
    if (!s->closing && s->client.in.len > 0)
        session_dispatch(s);
}

static void
on_client_event(struct conn *c, enum conn_event ev)
{
    struct session *s = c->owner;
    if (s->closing) {
        if (ev == CONN_EV_DRAINED || ev == CONN_EV_ERROR || ev == CONN_EV_EOF)
            session_finish(s);
        return;
    }
    switch (ev) {
    case CONN_EV_READABLE:
        if (s->relaying)
            relay_from_client(s);
        else
            session_dispatch(s);
        return;
    case CONN_EV_DRAINED:
        if (s->relaying)
            relay_pump(&s->backend, &s->client);
        return;
    case CONN_EV_TLS_STARTED:
        session_tls_started(s);
        return;
    case CONN_EV_TLS_READY:
        client_tls_ready(s);
        return;
    case CONN_EV_CONNECTED:
        return;
    case CONN_EV_EOF:
        session_client_eof(s);
        return;
    case CONN_EV_ERROR:
        if (s->phase == PHASE_HANDSHAKE) {
            bool alpn = s->client.tls != NULL && tls_alpn_mismatch(s->client.tls);
            session_log(s, LOG_INFO, "tls_failed", "error=\"%s\"",
                        s->client.error ? s->client.error : "-");
            session_close(s, alpn ? REASON_ALPN_MISMATCH : REASON_HANDSHAKE_FAILED);
        } else {
            session_close(s, REASON_CLIENT_ERROR);
        }
        return;
    }
}

static void
on_backend_event(struct conn *c, enum conn_event ev)
{
    struct session *s = c->owner;
    if (s->closing)
        return;
    switch (ev) {
    case CONN_EV_CONNECTED:
        backend_connected(s);
        return;
    case CONN_EV_READABLE:
        if (s->relaying) {
            relay_pump(&s->backend, &s->client);
            return;
        }
        s->in_backend_dispatch = true;
        while (!s->closing && !s->relaying && s->backend.in.len > 0) {
            size_t used = s->proto->on_backend_input(s, s->backend.in.data, s->backend.in.len);
            /* the protocol may have closed or replaced the backend leg meanwhile */
            if (s->closing || used == 0 || s->backend.state == CONN_CLOSED ||
                s->backend.state == CONN_CONNECTING)
                break;
            MOAT_ASSERT(used <= s->backend.in.len);
            conn_consume(&s->backend, used);
        }
        s->in_backend_dispatch = false;
        session_close_if_done(s);
        if (!s->closing && !s->relaying && buf_room(&s->backend.in) == 0)
            session_close(s, REASON_BACKEND_PROTOCOL);
        else if (!s->closing && s->relaying)
            session_relay_both(s);
        return;
    case CONN_EV_DRAINED:
        if (s->relaying)
            relay_from_client(s);
        else if (s->resume_on_backend_drain) {
            s->resume_on_backend_drain = false;
            session_input_resume(s);
        }
        return;
    case CONN_EV_TLS_STARTED:
    case CONN_EV_TLS_READY:
        return;
    case CONN_EV_EOF:
        if (s->relaying) {
            relay_pump(&s->backend, &s->client);
            session_close(s, s->client_eof ? REASON_CLIENT_EOF : REASON_BACKEND_EOF);
            return;
        }
        conn_close(&s->backend, true);
        s->proto->on_backend(s, BACKEND_EOF);
        return;
    case CONN_EV_ERROR:
        if (s->connect_deadline > 0) {
            backend_attempt_failed(s, s->backend.error); /* this address failed: next one */
            return;
        }
        conn_close(&s->backend, true);
        if (s->relaying) {
            session_close(s, REASON_BACKEND_ERROR);
            return;
        }
        s->proto->on_backend(s, BACKEND_ERROR);
        return;
    }
}

/* --- close --- */

void
session_close(struct session *s, enum close_reason r)
{
    if (s->closing)
        return;
    s->closing = true;
    s->reason = r;
    s->close_phase = s->phase;
    session_count_handshake(s, false);
    s->phase = PHASE_CLOSING;
    bool quiet = r != REASON_CLIENT_QUIT && r != REASON_SHUTDOWN && r != REASON_BACKEND_EOF &&
                 r != REASON_CLIENT_EOF;
    conn_close(&s->backend, quiet);
    conn_pause_read(&s->client, true);
    if (conn_out_pending(&s->client) > 0 && s->client.state != CONN_CLOSED &&
        s->client.error == NULL) {
        /* flush the last reply, bounded */
        s->linger_deadline = ev_now(worker_loop(s->worker)) + LINGER_S;
        session_timer_arm(s);
        return;
    }
    worker_defer_finish(s->worker, s);
}

/* The closing reason and the byte counts, for /metrics. */
static void
session_stats_close(struct session *s, uint64_t dur_ms)
{
    stats_add(s->stats, STAT_BYTES_IN, s->client.bytes_in);
    stats_add(s->stats, STAT_BYTES_OUT, s->client.bytes_out);
    if (s->reason == REASON_HANDSHAKE_FAILED)
        stats_tls_failure(s->stats, STAT_TLS_FAIL_HANDSHAKE);
    else if (s->reason == REASON_HANDSHAKE_TIMEOUT)
        stats_tls_failure(s->stats, STAT_TLS_FAIL_TIMEOUT);
    else if (s->reason == REASON_ALPN_MISMATCH)
        stats_tls_failure(s->stats, STAT_TLS_FAIL_ALPN);
    if (s->reason == REASON_ALPN_MISMATCH)
        stats_refusal(s->stats, STAT_REFUSED_ALPN);
    else if (s->reason == REASON_LIMIT || s->reason == REASON_TOO_MANY_COMMANDS)
        stats_refusal(s->stats, STAT_REFUSED_LIMIT);
    else if (s->reason == REASON_DENIED)
        stats_refusal(s->stats, STAT_REFUSED_ACCESS);
    stats_session_close(s->stats, dur_ms);
}

/* The one place a session's legs close and its closing line is written. Called from the loop,
 * never from inside a protocol callback. */
void
session_finish(struct session *s)
{
    if (s->closed)
        return;
    s->closed = true;
    struct ev_loop *loop = worker_loop(s->worker);
    ev_timer_stop(loop, &s->timer);
    session_auth_cancel(s);
    dnscheck_cancel(s->dns); /* no DNS callback may reach a finished session */
    bool quiet = s->reason != REASON_CLIENT_QUIT && s->reason != REASON_SHUTDOWN &&
                 s->reason != REASON_BACKEND_EOF && s->reason != REASON_CLIENT_EOF;
    conn_close(&s->backend, true);
    conn_close(&s->client, quiet);
    if (s->proto->on_close != NULL)
        s->proto->on_close(s);

    struct log_line l;
    log_begin(&l, LOG_INFO, "close");
    log_kv(&l, "sid", "%s", s->sid);
    log_kv(&l, "listener", "%s", s->listener->name);
    log_kv(&l, "proto", "%s", s->proto->name);
    /* an IPv6 address in brackets, so that address and port can be split */
    bool v6 = strchr(s->client_addr, ':') != NULL;
    log_kv(&l, "client", v6 ? "[%s]:%u" : "%s:%u", s->client_addr, s->client_port);
    log_kv(&l, "tls", "%s", s->tls_version ? s->tls_version : "none");
    if (s->tls_cipher != NULL)
        log_kv(&l, "cipher", "%s", s->tls_cipher);
    if (s->user[0] != '\0')
        log_kv_str(&l, "user", s->user, strlen(s->user));
    log_kv(&l, "backend", "%s", s->backend_addr);
    log_kv(&l, "in", "%llu", (unsigned long long)s->client.bytes_in);
    log_kv(&l, "out", "%llu", (unsigned long long)s->client.bytes_out);
    log_kv(&l, "dur_ms", "%lld", (long long)((ev_now(loop) - s->start) * 1000));
    log_kv(&l, "reason", "%s", close_reason_name(s->reason));
    log_kv(&l, "phase", "%s", session_phase_name(s->close_phase));
    if (s->timeout_name != NULL)
        log_kv(&l, "timeout", "%s", s->timeout_name);
    dnscheck_log_close(s->dns, &l);
    log_end(&l);
    admission_session_end(s->listener, (const struct sockaddr *)&s->peer);
    session_stats_close(s, (uint64_t)((ev_now(loop) - s->start) * 1000));
    worker_session_done(s->worker, s);
}

void
session_shutdown(struct session *s)
{
    if (s->closing)
        return;
    s->draining = true;
    /* mid-message and relayed sessions finish on their own (up to the grace period) */
    if (s->phase == PHASE_DATA || s->relaying)
        return;
    session_end(s, REASON_SHUTDOWN);
}
