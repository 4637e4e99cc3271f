/*
 * backend.c: opening the session's backend leg. Tries the backend's addresses in order, each
 * with the connect timeout (failover), sends the PROXY header first when the backend's identity
 * asks for one, then tells the protocol. Protocol-specific hand-offs (XCLIENT, ID) belong to
 * the protocols; the addresses the client used are known here.
 */
#include <arpa/inet.h>
#include <stdio.h>

#include "log.h"
#include "proxy_proto.h"
#include "session.h"
#include "session_env.h"

static void
backend_attempt(struct session *s)
{
    const struct config_backend *b = s->listener->backend;
    struct ev_loop *loop = s->env->loop;
    while (s->backend_next < b->naddrs) {
        size_t i = s->backend_next;
        const struct sockaddr *sa = (const struct sockaddr *)&b->addrs[i];
        conn_init(&s->backend, loop, s->listener->limits.backend_buffer_bytes,
                  s->listener->limits.backend_buffer_bytes, s->backend.on_event, s);
        unsigned port = 0;
        char text[INET6_ADDRSTRLEN] = "?";
        if (sa->sa_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
            inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
            port = ntohs(a->sin_port);
            snprintf(s->backend_addr, sizeof(s->backend_addr), "%s:%u", text, port);
        } else {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
            inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
            port = ntohs(a->sin6_port);
            snprintf(s->backend_addr, sizeof(s->backend_addr), "[%s]:%u", text, port);
        }
        if (conn_connect(&s->backend, sa, b->addr_lens[i]) == 0) {
            s->connect_deadline = ev_now(loop) + s->listener->timeouts.backend_connect_ms / 1000.0;
            session_timer_arm(s);
            return;
        }
        session_log(s, LOG_WARN, EV_BACKEND_CONNECT_FAILED, "backend=%s error=\"%s\"",
                    s->backend_addr, s->backend.error ? s->backend.error : "-");
        conn_close(&s->backend, true);
        s->backend_next++;
    }
    s->connect_deadline = 0;
    session_timer_arm(s);
    session_log(s, LOG_WARN, EV_BACKEND_UNAVAILABLE, "backend=%s", b->name);
    s->proto->on_backend(s, BACKEND_FAILED);
}

void
session_backend_connect(struct session *s)
{
    MOAT_ASSERT(s->listener->backend != NULL);
    s->backend_next = 0;
    session_set_phase(s, PHASE_CONNECT);
    backend_attempt(s);
}

void
backend_attempt_failed(struct session *s, const char *why)
{
    session_log(s, LOG_WARN, EV_BACKEND_CONNECT_FAILED, "backend=%s error=\"%s\"", s->backend_addr,
                why ? why : "-");
    conn_close(&s->backend, true);
    s->connect_deadline = 0;
    s->backend_next++;
    backend_attempt(s);
}

/* The PROXY header, or -1 (logged) when the addresses are unknown: a header without them would
 * make the backend take the connection's own (moat's, trusted) address as the client's. */
static int
send_proxy_header(struct session *s, enum backend_identity id)
{
    const struct sockaddr *src = (const struct sockaddr *)&s->peer;
    const struct sockaddr *dst = (const struct sockaddr *)&s->local;
    char h[PROXY_V2_MAX > PROXY_V1_MAX ? PROXY_V2_MAX : PROXY_V1_MAX];
    struct proxy_tls_info tls = {session_is_tls(s), s->tls_version, s->tls_cipher};
    size_t n = 0;
    if (s->local_len != 0 && id == IDENT_PROXY_V1) /* local_len 0: getsockname failed */
        n = proxy_v1_build(h, sizeof(h), src, dst);
    else if (s->local_len != 0)
        n = proxy_v2_build((unsigned char *)h, sizeof(h), src, dst, &tls);
    if (n == 0) {
        session_log(s, LOG_WARN, EV_PROXY_HEADER_FAILED,
                    "error=\"client or local address unknown\"");
        return -1;
    }
    return conn_write(&s->backend, h, n);
}

void
backend_connected(struct session *s)
{
    s->connect_deadline = 0;
    session_set_phase(s, PHASE_HANDOFF);
    enum backend_identity id = s->listener->backend->identity;
    if ((id == IDENT_PROXY_V1 || id == IDENT_PROXY_V2) && send_proxy_header(s, id) != 0) {
        session_close(s, REASON_INTERNAL);
        return;
    }
    session_log(s, LOG_DEBUG, EV_BACKEND_CONNECTED, "backend=%s", s->backend_addr);
    s->proto->on_backend(s, BACKEND_CONNECTED);
}

void
session_backend_close(struct session *s)
{
    conn_close(&s->backend, true);
    s->connect_deadline = 0;
    s->backend_wait_since = 0;
    session_timer_arm(s);
}
