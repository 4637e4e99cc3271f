/*
 * session_svc.c: the small services a protocol asks of its session that neither change its
 * state nor touch its sockets: accessors, the user and error count, and the session's event
 * log lines (which also move the /metrics counters events.h ties to them). The names of phases
 * live here too.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "session.h"
#include "stats.h"

static const char *const phase_names[] = {
    [PHASE_ACCEPT] = "accept",   [PHASE_HANDSHAKE] = "handshake", [PHASE_PREAUTH] = "preauth",
    [PHASE_AUTH] = "auth",       [PHASE_CONNECT] = "connect",     [PHASE_HANDOFF] = "handoff",
    [PHASE_COMMAND] = "command", [PHASE_DATA] = "data",           [PHASE_RELAY] = "relay",
    [PHASE_CLOSING] = "closing",
};

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

bool
session_is_tls(const struct session *s)
{
    return conn_is_tls(&s->client);
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
