/*
 * admission.c: admission control at accept. Cheap, synchronous, on the main thread; a refusal
 * is one non-blocking write of the protocol's line (or nothing on implicit-TLS ports).
 */
#include <arpa/inet.h>
#include <stdio.h>

#include "admission.h"
#include "log.h"
#include "worker.h"

static const char *const verdict_names[] = {
    [ADMIT_OK] = "ok",
    [ADMIT_MAX_SESSIONS] = "max_sessions",
};

enum admission_verdict
admission_check(const struct config *conf, const struct config_listener *l,
                const struct sockaddr *peer, socklen_t len)
{
    if (conf->max_sessions > 0 && workers_session_count() >= conf->max_sessions)
        return ADMIT_MAX_SESSIONS;
    return ADMIT_OK;
}

int
admission_refusal(char *out, size_t cap, const struct config *conf,
                  const struct config_listener *l, enum admission_verdict v)
{
    if (l->tls == LTLS_IMPLICIT)
        return 0;
    switch (l->proto) {
    case LPROTO_SMTP:
    case LPROTO_SUBMISSION:
        return snprintf(out, cap, "421 4.7.0 %s Too many connections, try again later\r\n",
                        conf->hostname);
    case LPROTO_IMAP:
        return snprintf(out, cap, "* BYE [UNAVAILABLE] Too many connections, try again later\r\n");
    case LPROTO_POP3:
        return snprintf(out, cap, "-ERR [SYS/TEMP] Too many connections, try again later\r\n");
    }
    return 0;
}

void
admission_log(const struct config_listener *l, const struct sockaddr *peer,
              enum admission_verdict v)
{
    char addr[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (peer->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)peer;
        inet_ntop(AF_INET, &a->sin_addr, addr, sizeof(addr));
        port = ntohs(a->sin_port);
    } else if (peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)peer;
        inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof(addr));
        port = ntohs(a->sin6_port);
    }
    struct log_line line;
    log_begin(&line, LOG_INFO, "refused");
    log_kv(&line, "listener", "%s", l->name);
    log_kv(&line, "client", "%s:%u", addr, port);
    log_kv(&line, "reason", "%s", verdict_names[v]);
    log_end(&line);
}
