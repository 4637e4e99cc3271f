/*
 * fake_session.c: the fake core for protocol unit tests; see fake_session.h. Dispatch follows
 * the real core: input goes to the protocol until it consumes nothing, pauses, asks for
 * STARTTLS (the rest is then discarded at the handshake), switches to relay or closes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "fake_session.h"

static char out_copy[FAKE_OUT_MAX + 1];

struct session *
fake_session_new(const struct protocol *proto, enum listener_proto p, enum listener_tls t,
                 enum backend_identity id)
{
    struct session *s = calloc(1, sizeof(*s));
    s->proto = proto;
    s->state = proto->state_size ? calloc(1, proto->state_size) : NULL;
    s->conf.hostname = "mx.moat.test";
    s->listener.name = "test";
    s->listener.proto = p;
    s->listener.tls = t;
    s->listener.backend = &s->backend;
    s->listener.local_domains = "example.test";
    s->listener.auth = p != LPROTO_SMTP;
    s->listener.sender_login_match = true;
    s->listener.smtputf8 = true;
    s->listener.dsn = true;
    s->listener.limits.client_buffer_bytes = 32768;
    s->listener.limits.backend_buffer_bytes = 32768;
    s->listener.limits.message_size_bytes = 10240000;
    s->listener.limits.max_recipients = 100;
    s->listener.limits.max_errors = 10;
    s->listener.limits.max_preauth_commands = 50;
    s->listener.auth_conf.max_failures = 3;
    s->backend.name = "backend";
    s->backend.identity = id;
    s->backend.helo_name = "moat.internal";
    return s;
}

void
fake_session_free(struct session *s)
{
    if (s->proto->on_close != NULL)
        s->proto->on_close(s);
    free(s->state);
    free(s);
}

static void
dispatch(struct session *s)
{
    while (!s->closed && !s->relaying && !s->input_paused && !s->starttls_requested &&
           s->client_in_len > 0) {
        size_t used = s->proto->on_client_input(s, s->client_in, s->client_in_len);
        if (s->closed || used == 0)
            break;
        memmove(s->client_in, s->client_in + used, s->client_in_len - used);
        s->client_in_len -= used;
    }
}

void
fake_start(struct session *s)
{
    s->tls = s->listener.tls == LTLS_IMPLICIT;
    s->phase = PHASE_PREAUTH;
    s->proto->on_start(s);
}

void
fake_client_send(struct session *s, const char *p, size_t n)
{
    if (n > sizeof(s->client_in) - s->client_in_len)
        n = sizeof(s->client_in) - s->client_in_len;
    memcpy(s->client_in + s->client_in_len, p, n);
    s->client_in_len += n;
    dispatch(s);
}

void
fake_client_sends(struct session *s, const char *text)
{
    fake_client_send(s, text, strlen(text));
}

void
fake_tls_handshake_done(struct session *s)
{
    s->discarded_at_starttls += s->client_in_len;
    s->client_in_len = 0;
    s->starttls_requested = false;
    s->tls = true;
    s->phase = PHASE_PREAUTH;
    s->proto->on_tls_ready(s);
}

void
fake_backend_event(struct session *s, enum backend_event ev)
{
    if (ev == BACKEND_CONNECTED)
        s->phase = PHASE_HANDOFF;
    s->proto->on_backend(s, ev);
    dispatch(s);
}

void
fake_backend_sends(struct session *s, const char *text)
{
    size_t n = strlen(text);
    memcpy(s->backend_in + s->backend_in_len, text, n);
    s->backend_in_len += n;
    while (!s->closed && !s->relaying && s->backend_in_len > 0) {
        size_t used = s->proto->on_backend_input(s, s->backend_in, s->backend_in_len);
        if (s->closed || used == 0)
            break;
        memmove(s->backend_in, s->backend_in + used, s->backend_in_len - used);
        s->backend_in_len -= used;
    }
    dispatch(s);
}

static const char *
take(char *buf, size_t *len)
{
    memcpy(out_copy, buf, *len);
    out_copy[*len] = '\0';
    *len = 0;
    return out_copy;
}

const char *
fake_client_output(struct session *s)
{
    return take(s->client_out, &s->client_out_len);
}

const char *
fake_backend_output(struct session *s)
{
    return take(s->backend_out, &s->backend_out_len);
}

/* --- the services --- */

void *
session_proto_state(struct session *s)
{
    return s->state;
}

const struct config *
session_config(const struct session *s)
{
    return &s->conf;
}

const struct config_listener *
session_listener(const struct session *s)
{
    return &s->listener;
}

const char *
session_id(const struct session *s)
{
    return "0000beef";
}

const char *
session_client_addr(const struct session *s)
{
    return "192.0.2.7";
}

unsigned
session_client_port(const struct session *s)
{
    return 40000;
}

const char *
session_local_addr(const struct session *s)
{
    return "203.0.113.1";
}

unsigned
session_local_port(const struct session *s)
{
    return 25;
}

const struct sockaddr *
session_client_sockaddr(const struct session *s)
{
    static struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(0xC0000207);
    return (const struct sockaddr *)&a;
}

bool
session_is_tls(const struct session *s)
{
    return s->tls;
}

enum session_phase
session_phase(const struct session *s)
{
    return s->phase;
}

void
session_set_phase(struct session *s, enum session_phase p)
{
    s->phase = p;
}

int
session_reply(struct session *s, const char *p, size_t n)
{
    if (s->closed)
        return -1;
    if (n > FAKE_OUT_MAX - s->client_out_len)
        return -1;
    memcpy(s->client_out + s->client_out_len, p, n);
    s->client_out_len += n;
    return 0;
}

int
session_replyf(struct session *s, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    return session_reply(s, line, (size_t)n);
}

int
session_reply_line(struct session *s, const char *prefix, const char *text, size_t n)
{
    if (session_reply(s, prefix, strlen(prefix)) != 0 || session_reply(s, text, n) != 0)
        return -1;
    return session_reply(s, "\r\n", 2);
}

enum start_tls_result
session_start_tls(struct session *s)
{
    if (s->tls || s->starttls_requested || s->listener.tls == LTLS_NONE)
        return START_TLS_UNAVAILABLE;
    if (s->tls_busy)
        return START_TLS_BUSY;
    s->starttls_requested = true;
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
    s->input_paused = false;
}

void
session_backend_connect(struct session *s)
{
    s->backend_connect_requested = true;
    s->phase = PHASE_CONNECT;
}

void
session_backend_close(struct session *s)
{
    s->backend_closed = true;
    s->backend_waiting = false;
    s->backend_in_len = 0; /* like the core: the leg's buffers go with it */
}

int
session_backend_send(struct session *s, const char *p, size_t n)
{
    if (n > FAKE_OUT_MAX - s->backend_out_len)
        return -1;
    memcpy(s->backend_out + s->backend_out_len, p, n);
    s->backend_out_len += n;
    return 0;
}

int
session_backend_sendf(struct session *s, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    return session_backend_send(s, line, (size_t)n);
}

size_t
session_backend_pending(const struct session *s)
{
    return 0;
}

void
session_input_pause_until_backend_drained(struct session *s)
{
}

void
session_backend_wait(struct session *s, bool waiting)
{
    s->backend_waiting = waiting;
}

const char *
session_backend_addr(const struct session *s)
{
    return "127.0.0.1:10025";
}

void
session_relay(struct session *s)
{
    s->relaying = true;
    s->phase = PHASE_RELAY;
}

void
session_set_user(struct session *s, const char *user)
{
    snprintf(s->user, sizeof(s->user), "%s", user);
}

bool
session_count_error(struct session *s)
{
    s->errors++;
    return s->listener.limits.max_errors > 0 && s->errors >= s->listener.limits.max_errors;
}

bool
session_count_command(struct session *s)
{
    uint32_t max = s->listener.limits.max_preauth_commands;
    return max > 0 && ++s->preauth_commands > max;
}

void
session_close(struct session *s, enum close_reason r)
{
    if (s->closed)
        return;
    s->closed = true;
    s->close_reason = r;
}

void
session_log(struct session *s, int level, enum log_event ev, const char *fmt, ...)
{
}

void
session_auth_verify(struct session *s, const struct credentials *c, enum sasl_mech m)
{
    s->auth_requested = true;
    s->auth_mech = m;
    snprintf(s->auth_user, sizeof(s->auth_user), "%s", c->user);
    s->input_paused = true;
}

void
fake_auth_done(struct session *s, enum auth_status st, const char *user)
{
    s->auth_requested = false;
    s->input_paused = false;
    struct auth_result r = {.status = st, .user = user};
    s->proto->on_auth_done(s, &r);
}

void
fake_auth_challenge(struct session *s, const char *challenge_b64)
{
    s->auth_requested = false;
    s->input_paused = false;
    struct auth_result r = {.status = AUTH_CONTINUE, .challenge = challenge_b64};
    s->proto->on_auth_done(s, &r);
}

unsigned
session_auth_mechs(struct session *s)
{
    return s->auth_mechs != 0 ? s->auth_mechs : SASL_MECHS_PLAIN_LOGIN;
}

void
session_auth_step(struct session *s, struct sasl_exchange *x)
{
    s->auth_requested = true;
    s->auth_mech = x->mech;
    s->auth_steps++;
    s->auth_step_has_resp = x->has_resp;
    snprintf(s->auth_resp, sizeof(s->auth_resp), "%.*s", (int)x->resp_len,
             x->resp ? (const char *)x->resp : "");
    sasl_exchange_resp_wipe(x);
    x->resp_len = 0;
    x->has_resp = false;
    s->input_paused = true;
}

void
session_auth_abort(struct session *s)
{
    s->auth_aborted = true;
}

bool
session_auth_banned(struct session *s, const char *user, size_t user_len)
{
    return s->banned;
}

void
session_auth_failed(struct session *s, const char *user, size_t user_len, const char *mech,
                    const char *reply, const char *final_reply)
{
    s->auth_failures++;
    uint32_t max = s->listener.auth_conf.max_failures;
    bool last = max > 0 && s->auth_failures >= max;
    session_reply(s, last ? final_reply : reply, strlen(last ? final_reply : reply));
    if (last)
        session_close(s, REASON_AUTH_FAILED);
}

void
session_auth_login(struct session *s, const char *user, size_t user_len, const char *mech)
{
    snprintf(s->user, sizeof(s->user), "%.*s", (int)user_len, user);
    snprintf(s->login_mech, sizeof(s->login_mech), "%s", mech);
}

void
session_log_peer(struct session *s, int level, enum log_event ev, const char *key, const char *p,
                 size_t n)
{
}

const char *
session_phase_name(enum session_phase p)
{
    return "phase";
}

/* --- DNS checks --- */

enum dns_verdict
session_dns_verdict(struct session *s, const char **reply_out)
{
    *reply_out = s->dns_reply;
    return s->dns_verdict;
}

void
session_dns_helo(struct session *s, const char *helo)
{
    snprintf(s->dns_helo, sizeof(s->dns_helo), "%s", helo);
}

const char *
session_client_name(struct session *s)
{
    return s->client_name ? s->client_name : "[UNAVAILABLE]";
}

enum dns_verdict
session_spf_verdict(struct session *s, const char *sender, size_t n, const char *helo,
                    const char **reply_out, const char **header_out)
{
    snprintf(s->spf_sender, sizeof(s->spf_sender), "%.*s", (int)n, sender);
    *reply_out = s->spf_reply;
    *header_out = s->spf_verdict == DNS_VERDICT_PENDING ? NULL : s->spf_header;
    return s->spf_verdict;
}

void
session_uribl_start(struct session *s)
{
    s->uribl_starts++;
    s->uribl_fed = 0;
}

void
session_uribl_feed(struct session *s, const char *p, size_t n)
{
    s->uribl_fed += n;
}

enum dns_verdict
session_uribl_verdict(struct session *s, bool give_up, const char **reply_out)
{
    *reply_out = s->uribl_reply;
    if (give_up && s->uribl_verdict == DNS_VERDICT_PENDING) {
        s->uribl_gave_up = true;
        return DNS_VERDICT_PASS;
    }
    return s->uribl_verdict;
}

void
fake_dns_done(struct session *s)
{
    if (s->proto->on_dns_done != NULL)
        s->proto->on_dns_done(s);
    dispatch(s);
}

void
session_timer_start(struct session *s, uint32_t ms)
{
    s->timer_ms = ms;
}

void
session_timer_stop(struct session *s)
{
    s->timer_ms = 0;
}

void
fake_timer_fire(struct session *s)
{
    s->timer_ms = 0;
    s->proto->on_timer(s);
    dispatch(s);
}

bool
session_rate_allows(struct session *s, enum client_rate k)
{
    return k == CLIENT_RATE_MESSAGES ? !s->refuse_messages : !s->refuse_recipients;
}

void
session_rate_count(struct session *s, enum client_rate k)
{
    if (k == CLIENT_RATE_MESSAGES)
        s->counted_messages++;
    else
        s->counted_recipients++;
}
