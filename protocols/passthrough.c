/*
 * passthrough.c: the simplest protocol: connect the backend as soon as the session is ready and
 * relay bytes both ways. It proves the core end to end (TLS termination, failover, relay,
 * timeouts) and serves listeners whose protocol module does not exist yet. It must never be
 * used where moat has to enforce pre-auth policy.
 */
#include "dialogue.h"
#include "protocols.h"

static void
pt_on_start(struct session *s)
{
    session_backend_connect(s);
}

static size_t
pt_on_client_input(struct session *s, const char *p, size_t n)
{
    /* Bytes before the backend is up wait in the buffer; the relay forwards them. */
    session_input_pause(s);
    return 0;
}

static void
pt_on_backend(struct session *s, enum backend_event ev)
{
    switch (ev) {
    case BACKEND_CONNECTED:
        session_relay(s);
        return;
    case BACKEND_FAILED:
    case BACKEND_EOF:
    case BACKEND_ERROR:
    case BACKEND_TIMEOUT:
        session_close(s, dialogue_backend_reason(ev));
        return;
    }
}

static size_t
pt_on_backend_input(struct session *s, const char *p, size_t n)
{
    return 0;
}

static const char *
pt_state_name(const struct session *s)
{
    return "relay";
}

const struct protocol passthrough_protocol = {
    .name = "passthrough",
    .state_size = 0,
    .on_start = pt_on_start,
    .on_client_input = pt_on_client_input,
    .on_tls_ready = NULL,
    .on_backend = pt_on_backend,
    .on_backend_input = pt_on_backend_input,
    .farewell = NULL,
    .on_close = NULL,
    .state_name = pt_state_name,
};
