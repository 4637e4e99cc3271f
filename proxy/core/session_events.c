/*
 * session_events.c: what drives one client session from accept to its closing log line: setting
 * it up, the events of its two connection legs and of its one timer (phase deadlines, idle,
 * backend waits), and the one teardown that writes the closing line. The moving parts it drives
 * (phases, output, dispatch to the protocol, the relay, close) are in session.c. Memory is freed
 * later by the worker, never inside the callback that decided to close.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "cluster.h"
#include "dnscheck.h"
#include "log.h"
#include "session.h"
#include "session_env.h"
#include "stats.h"
#include "tls.h"

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

struct session *
session_new(struct session_env *e, int fd, const struct sockaddr *peer, socklen_t peer_len,
            struct config *conf, const struct config_listener *l, struct tls_ctx *tls)
{
    static _Atomic uint32_t next_id;
    struct session *s = xcalloc(1, sizeof(*s));
    s->id = atomic_fetch_add(&next_id, 1) + 1;
    /* ids are unique in the process; the random-looking form keeps logs greppable */
    snprintf(s->sid, sizeof(s->sid), "%08x", (unsigned)(s->id * 2654435761u));
    s->env = e;
    s->conf = conf;
    s->listener = l;
    s->stats = stats_find(l->name);
    stats_session_open(s->stats);
    s->tls_ctx = tls;
    s->proto = l->protocol;
    MOAT_ASSERT(s->proto != NULL); /* protocols_bind() at load */
    if (s->proto->state_size > 0)
        s->proto_state = xcalloc(1, s->proto->state_size);
    struct ev_loop *loop = e->loop;
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
        if (conn_start_tls(&s->client, tls, s->proto->alpn, s->conf->tls.alpn_strict) != 0) {
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

/* The name of the timeout that ends the handshake phase now. */
static const char *
handshake_timeout_name(const struct session *s)
{
    const struct config_timeouts *t = &s->listener->timeouts;
    return s->client.tls == NULL && t->tls_first_byte_ms < t->handshake_ms ? "tls_first_byte"
                                                                           : "handshake";
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
    if (session_in_preauth(s) && s->listener->timeouts.preauth_total_ms > 0 &&
        now >= s->total_deadline) {
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
    if (s->idle_s > 0 && now >= session_last_activity(s) + s->idle_s) {
        s->timeout_name = idle_timeout_name(s->phase);
        session_end(s, REASON_IDLE_TIMEOUT);
        return;
    }
    session_timer_arm(s);
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
        session_log(s, LOG_INFO, EV_STARTTLS_DISCARD, "bytes=%llu",
                    (unsigned long long)s->client.discarded_at_starttls);
    session_set_phase(s, PHASE_PREAUTH);
    s->total_deadline = ev_now(s->env->loop) + s->listener->timeouts.preauth_total_ms / 1000.0;
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
            session_relay_from_client(s);
        else
            session_dispatch(s);
        return;
    case CONN_EV_DRAINED:
        if (s->relaying)
            session_relay_pump(&s->backend, &s->client);
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
            session_log(s, LOG_INFO, EV_TLS_FAILED, "error=\"%s\"",
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
            session_relay_pump(&s->backend, &s->client);
            return;
        }
        s->in_backend_dispatch = true;
        conn_cork(&s->client); /* the lines passed on from this read leave as one write */
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
        conn_uncork(&s->client);
        session_close_if_done(s);
        if (!s->closing && !s->relaying && buf_room(&s->backend.in) == 0)
            session_close(s, REASON_BACKEND_PROTOCOL);
        else if (!s->closing && s->relaying)
            session_relay_both(s);
        return;
    case CONN_EV_DRAINED:
        if (s->relaying)
            session_relay_from_client(s);
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
            session_relay_pump(&s->backend, &s->client);
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

/* --- the end --- */

/* The closing reason and the byte counts, for /metrics. */
static void
session_stats_close(struct session *s, uint64_t dur_ms)
{
    stats_add(s->stats, STAT_BYTES_IN, s->client.bytes_in);
    stats_add(s->stats, STAT_BYTES_OUT, s->client.bytes_out);
    stats_mark(s->stats, close_reason_mark(s->reason));
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
    struct ev_loop *loop = s->env->loop;
    ev_timer_stop(loop, &s->timer);
    session_auth_cancel(s);
    dnscheck_cancel(s->dns); /* no DNS callback may reach a finished session */
    conn_close(&s->backend, true);
    conn_close(&s->client, !close_reason_orderly(s->reason));
    if (s->proto->on_close != NULL)
        s->proto->on_close(s);

    struct log_line l;
    log_begin(&l, LOG_INFO, EV_CLOSE);
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
    admission_session_end(s->listener,
                          s->admission_uncounted ? NULL : (const struct sockaddr *)&s->peer);
    cluster_lease_end(s->lease);
    s->lease = NULL;
    session_stats_close(s, (uint64_t)((ev_now(loop) - s->start) * 1000));
    s->env->done(s->env, s);
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
