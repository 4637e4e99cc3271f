/*
 * session_svc.c: the small services a protocol asks of its session that neither change its
 * state nor touch its sockets: accessors, the user and error count, and the session's event
 * log lines (which also move the /metrics counters tied to them). The names of close reasons
 * and phases live here too.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "session.h"
#include "stats.h"

static const char *const reason_names[] = {
    [REASON_NONE] = "none",
    [REASON_CLIENT_QUIT] = "client_quit",
    [REASON_CLIENT_EOF] = "client_eof",
    [REASON_CLIENT_ERROR] = "client_error",
    [REASON_BACKEND_EOF] = "backend_eof",
    [REASON_BACKEND_ERROR] = "backend_error",
    [REASON_BACKEND_UNAVAILABLE] = "backend_unavailable",
    [REASON_BACKEND_PROTOCOL] = "backend_protocol",
    [REASON_HANDSHAKE_FAILED] = "handshake_failed",
    [REASON_ALPN_MISMATCH] = "alpn_mismatch",
    [REASON_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [REASON_IDLE_TIMEOUT] = "idle_timeout",
    [REASON_TOTAL_TIMEOUT] = "total_timeout",
    [REASON_BACKEND_TIMEOUT] = "backend_timeout",
    [REASON_PROTOCOL_ERROR] = "protocol_error",
    [REASON_TOO_MANY_ERRORS] = "too_many_errors",
    [REASON_TOO_MANY_COMMANDS] = "too_many_commands",
    [REASON_LINE_TOO_LONG] = "line_too_long",
    [REASON_BUFFER_FULL] = "buffer_full",
    [REASON_AUTH_FAILED] = "auth_failed",
    [REASON_SHUTDOWN] = "shutdown",
    [REASON_LIMIT] = "limit",
    [REASON_DENIED] = "denied",
    [REASON_INTERNAL] = "internal",
};

static const char *const phase_names[] = {
    [PHASE_ACCEPT] = "accept",   [PHASE_HANDSHAKE] = "handshake", [PHASE_PREAUTH] = "preauth",
    [PHASE_AUTH] = "auth",       [PHASE_CONNECT] = "connect",     [PHASE_HANDOFF] = "handoff",
    [PHASE_COMMAND] = "command", [PHASE_DATA] = "data",           [PHASE_RELAY] = "relay",
    [PHASE_CLOSING] = "closing",
};

const char *
close_reason_name(enum close_reason r)
{
    return (size_t)r < ARRAY_SIZE(reason_names) && reason_names[r] ? reason_names[r] : "?";
}

const char *
session_phase_name(enum session_phase p)
{
    return (size_t)p < ARRAY_SIZE(phase_names) && phase_names[p] ? phase_names[p] : "?";
}

/* --- accessors for protocols --- */

void *
session_proto_state(struct session *s)
{
    return s->proto_state;
}

const struct config *
session_config(const struct session *s)
{
    return s->conf;
}

const struct config_listener *
session_listener(const struct session *s)
{
    return s->listener;
}

const char *
session_id(const struct session *s)
{
    return s->sid;
}

const char *
session_client_addr(const struct session *s)
{
    return s->client_addr;
}

unsigned
session_client_port(const struct session *s)
{
    return s->client_port;
}

const char *
session_local_addr(const struct session *s)
{
    return s->local_addr;
}

unsigned
session_local_port(const struct session *s)
{
    return s->local_port;
}

const struct sockaddr *
session_client_sockaddr(const struct session *s)
{
    return (const struct sockaddr *)&s->peer;
}

bool session_test_assume_tls;

bool
session_is_tls(const struct session *s)
{
    return conn_is_tls(&s->client) || session_test_assume_tls;
}

enum session_phase
session_phase(const struct session *s)
{
    return s->phase;
}

const char *
session_backend_addr(const struct session *s)
{
    return s->backend_addr;
}

void
session_set_user(struct session *s, const char *user)
{
    snprintf(s->user, sizeof(s->user), "%s", user ? user : "");
    if (user != NULL && user[0] != '\0')
        stats_add(s->stats, STAT_AUTH_SUCCESS, 1);
}

bool
session_count_error(struct session *s)
{
    s->errors++;
    return s->listener->limits.max_errors > 0 && s->errors >= s->listener->limits.max_errors;
}

/* --- logging --- */

/* Events a protocol logs that also move a /metrics counter: the protocols stay unaware of
 * metrics, and the log line and the counter can never disagree. */
static void
session_stats_event(struct session *s, const char *event)
{
    if (strcmp(event, "relay_denied") == 0)
        stats_refusal(s->stats, STAT_REFUSED_RELAY);
    else if (strcmp(event, "smuggling_attempt") == 0)
        stats_refusal(s->stats, STAT_REFUSED_SMUGGLING);
    else if (strcmp(event, "dnsbl_refused") == 0)
        stats_refusal(s->stats, STAT_REFUSED_DNSBL);
    else if (strcmp(event, "uribl_refused") == 0)
        stats_refusal(s->stats, STAT_REFUSED_URIBL);
    else if (strcmp(event, "backend_connect_failed") == 0)
        stats_add(s->stats, STAT_BACKEND_CONNECT_FAILURES, 1);
}

void
session_log(struct session *s, int level, const char *event, const char *fmt, ...)
{
    session_stats_event(s, event);
    struct log_line l;
    log_begin(&l, (enum log_level)level, event);
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
session_log_peer(struct session *s, int level, const char *event, const char *key, const char *p,
                 size_t n)
{
    session_stats_event(s, event);
    struct log_line l;
    log_begin(&l, (enum log_level)level, event);
    log_kv(&l, "sid", "%s", s->sid);
    log_kv_str(&l, key, p, n);
    log_end(&l);
}
