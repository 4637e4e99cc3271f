/*
 * session_svc.c: the small services a protocol asks of its session that neither change its
 * state nor touch its sockets: accessors, the user and error count. The names of phases live
 * here too.
 */
#include <stdio.h>

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
    /* the test switch is a weak reference: in moat itself it is not defined (address NULL) */
    return conn_is_tls(&s->client) || (&session_test_assume_tls != NULL && session_test_assume_tls);
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

bool
session_count_command(struct session *s)
{
    uint32_t max = s->listener->limits.max_preauth_commands;
    return max > 0 && ++s->preauth_commands > max;
}
