/*
 * events.h: the words moat logs, each defined once with what goes with it: every log event (and
 * the /metrics counter it moves) and every reason a session closes for (whether it is an
 * orderly end, what the protocol says before closing, what /metrics counts). Names come from
 * these lists only; adding an event or a close reason is one line here.
 */
#ifndef MOAT_EVENTS_H
#define MOAT_EVENTS_H

#include "stats.h"

/* id, name in the log line (event=NAME), /metrics counter moved by every such line */
#define MOAT_LOG_EVENTS(X)                                                                         \
    X(EV_ACCEPT_PAUSED, "accept_paused", STAT_MARK_NONE)                                           \
    X(EV_AUTH_BUSY, "auth_busy", STAT_MARK_NONE)                                                   \
    X(EV_AUTH_FAILED, "auth_failed", STAT_MARK_NONE)                                               \
    X(EV_AUTH_READY, "auth_ready", STAT_MARK_NONE)                                                 \
    X(EV_AUTH_TIMEOUT, "auth_timeout", STAT_MARK_NONE)                                             \
    X(EV_AUTH_UNAVAILABLE, "auth_unavailable", STAT_MARK_NONE)                                     \
    X(EV_BACKEND_421, "backend_421", STAT_MARK_NONE)                                               \
    X(EV_BACKEND_BAD_REPLY, "backend_bad_reply", STAT_MARK_NONE)                                   \
    X(EV_BACKEND_CHECK, "backend_check", STAT_MARK_NONE)                                           \
    X(EV_BACKEND_CHECK_DONE, "backend_check_done", STAT_MARK_NONE)                                 \
    X(EV_BACKEND_CONNECT_FAILED, "backend_connect_failed", STAT_MARK_BACKEND_CONNECT_FAILURE)      \
    X(EV_BACKEND_CONNECTED, "backend_connected", STAT_MARK_NONE)                                   \
    X(EV_BACKEND_GREETING, "backend_greeting", STAT_MARK_NONE)                                     \
    X(EV_BACKEND_HANDOFF, "backend_handoff", STAT_MARK_NONE)                                       \
    X(EV_BACKEND_LOGIN, "backend_login", STAT_MARK_NONE)                                           \
    X(EV_BACKEND_LOGIN_UNAVAILABLE, "backend_login_unavailable", STAT_MARK_NONE)                   \
    X(EV_BACKEND_UNAVAILABLE, "backend_unavailable", STAT_MARK_NONE)                               \
    X(EV_BACKEND_XCLIENT, "backend_xclient", STAT_MARK_NONE)                                       \
    X(EV_BACKEND_XCLIENT_IGNORED, "backend_xclient_ignored", STAT_MARK_NONE)                       \
    X(EV_CLOSE, "close", STAT_MARK_NONE)                                                           \
    X(EV_CLUSTER_DOWN, "cluster_down", STAT_MARK_NONE)                                             \
    X(EV_CLUSTER_UP, "cluster_up", STAT_MARK_NONE)                                                 \
    X(EV_CERTIFICATE_EXPIRED, "certificate_expired", STAT_MARK_NONE)                               \
    X(EV_CERTIFICATE_EXPIRING, "certificate_expiring", STAT_MARK_NONE)                             \
    X(EV_DNS_REFUSE, "dns_refuse", STAT_MARK_NONE)                                                 \
    X(EV_DNS_SERVERS_BAD, "dns_servers_bad", STAT_MARK_NONE)                                       \
    X(EV_DNS_UNAVAILABLE, "dns_unavailable", STAT_MARK_NONE)                                       \
    X(EV_DNS_WARN, "dns_warn", STAT_MARK_NONE)                                                     \
    X(EV_DNS_WOULD_REFUSE, "dns_would_refuse", STAT_MARK_NONE)                                     \
    X(EV_DNSBL, "dnsbl", STAT_MARK_NONE)                                                           \
    X(EV_DNSBL_ERROR_CODE, "dnsbl_error_code", STAT_MARK_NONE)                                     \
    X(EV_DNSBL_REFUSED, "dnsbl_refused", STAT_MARK_REFUSED_DNSBL)                                  \
    X(EV_HTTP_REQUEST, "http_request", STAT_MARK_NONE)                                             \
    X(EV_IMAP_REFUSED, "imap_refused", STAT_MARK_NONE)                                             \
    X(EV_IMAP_STATE, "imap_state", STAT_MARK_NONE)                                                 \
    X(EV_LISTENER_CLOSED, "listener_closed", STAT_MARK_NONE)                                       \
    X(EV_LISTENING, "listening", STAT_MARK_NONE)                                                   \
    X(EV_LOG_REOPEN_FAILED, "log_reopen_failed", STAT_MARK_NONE)                                   \
    X(EV_LOGIN, "login", STAT_MARK_NONE)                                                           \
    X(EV_LOGIN_UNAVAILABLE, "login_unavailable", STAT_MARK_NONE)                                   \
    X(EV_MESSAGE, "message", STAT_MARK_NONE)                                                       \
    X(EV_MESSAGE_REFUSED, "message_refused", STAT_MARK_NONE)                                       \
    X(EV_METRICS_LISTENING, "metrics_listening", STAT_MARK_NONE)                                   \
    X(EV_POP3_STATE, "pop3_state", STAT_MARK_NONE)                                                 \
    X(EV_POP3_UNKNOWN, "pop3_unknown", STAT_MARK_NONE)                                             \
    X(EV_PRIVILEGES_DROPPED, "privileges_dropped", STAT_MARK_NONE)                                 \
    X(EV_PROXY_HEADER, "proxy_header", STAT_MARK_NONE)                                             \
    X(EV_PROXY_HEADER_FAILED, "proxy_header_failed", STAT_MARK_NONE)                               \
    X(EV_RDNS_BAD_NAME, "rdns_bad_name", STAT_MARK_NONE)                                           \
    X(EV_REFUSED, "refused", STAT_MARK_NONE)                                                       \
    X(EV_RELAY_DENIED, "relay_denied", STAT_MARK_REFUSED_RELAY)                                    \
    X(EV_RELOAD_ERROR, "reload_error", STAT_MARK_NONE)                                             \
    X(EV_RELOAD_FAILED, "reload_failed", STAT_MARK_NONE)                                           \
    X(EV_RELOAD_PARTIAL, "reload_partial", STAT_MARK_NONE)                                         \
    X(EV_RELOADED, "reloaded", STAT_MARK_NONE)                                                     \
    X(EV_REPLY_TOO_LONG, "reply_too_long", STAT_MARK_NONE)                                         \
    X(EV_ROOT_REFUSED, "root_refused", STAT_MARK_NONE)                                             \
    X(EV_RUNNING_AS_ROOT, "running_as_root", STAT_MARK_NONE)                                       \
    X(EV_SASL_LOG, "sasl_log", STAT_MARK_NONE)                                                     \
    X(EV_SASL_RESULT, "sasl_result", STAT_MARK_NONE)                                               \
    X(EV_SHUTDOWN, "shutdown", STAT_MARK_NONE)                                                     \
    X(EV_SMTP_HANDOFF_FAILED, "smtp_handoff_failed", STAT_MARK_NONE)                               \
    X(EV_SMTP_STATE, "smtp_state", STAT_MARK_NONE)                                                 \
    X(EV_SMUGGLING_ATTEMPT, "smuggling_attempt", STAT_MARK_REFUSED_SMUGGLING)                      \
    X(EV_SPF, "spf", STAT_MARK_NONE)                                                               \
    X(EV_STARTED, "started", STAT_MARK_NONE)                                                       \
    X(EV_STARTTLS_DISCARD, "starttls_discard", STAT_MARK_NONE)                                     \
    X(EV_STARTUP_FAILED, "startup_failed", STAT_MARK_NONE)                                         \
    X(EV_STOPPED, "stopped", STAT_MARK_NONE)                                                       \
    X(EV_TLS_FAILED, "tls_failed", STAT_MARK_NONE)                                                 \
    X(EV_URIBL, "uribl", STAT_MARK_NONE)                                                           \
    X(EV_URIBL_REFUSED, "uribl_refused", STAT_MARK_REFUSED_URIBL)                                  \
    X(EV_WOULD_REFUSE, "would_refuse", STAT_MARK_NONE)

enum log_event {
#define MOAT_EVENT_ID(id, name, mark) id,
    MOAT_LOG_EVENTS(MOAT_EVENT_ID)
#undef MOAT_EVENT_ID
};

/* What a protocol says before moat closes a session, by kind (struct protocol's farewell). */
enum farewell {
    FAREWELL_NONE = 0,    /* nothing: the peer left, failed, or was already answered */
    FAREWELL_TIMEOUT,     /* idle or too slow */
    FAREWELL_SHUTDOWN,    /* moat is stopping */
    FAREWELL_POLICY,      /* too many errors, commands or failures; a limit; denied */
    FAREWELL_PROTOCOL,    /* the client broke the protocol or overflowed a buffer */
    FAREWELL_UNAVAILABLE, /* the backend or moat itself cannot serve */
};

/* id, name in the closing line (reason=NAME), an orderly end (the legs close gracefully: TLS
 * close_notify), what the protocol says before closing, the /metrics counter it moves */
#define MOAT_CLOSE_REASONS(X)                                                                      \
    X(REASON_NONE, "none", false, FAREWELL_NONE, STAT_MARK_NONE)                                   \
    X(REASON_CLIENT_QUIT, "client_quit", true, FAREWELL_NONE, STAT_MARK_NONE)                      \
    X(REASON_CLIENT_EOF, "client_eof", true, FAREWELL_NONE, STAT_MARK_NONE)                        \
    X(REASON_CLIENT_ERROR, "client_error", false, FAREWELL_NONE, STAT_MARK_NONE)                   \
    X(REASON_BACKEND_EOF, "backend_eof", true, FAREWELL_NONE, STAT_MARK_NONE)                      \
    X(REASON_BACKEND_ERROR, "backend_error", false, FAREWELL_NONE, STAT_MARK_NONE)                 \
    X(REASON_BACKEND_UNAVAILABLE, "backend_unavailable", false, FAREWELL_UNAVAILABLE,              \
      STAT_MARK_NONE)                                                                              \
    X(REASON_BACKEND_PROTOCOL, "backend_protocol", false, FAREWELL_NONE, STAT_MARK_NONE)           \
    X(REASON_HANDSHAKE_FAILED, "handshake_failed", false, FAREWELL_NONE,                           \
      STAT_MARK_TLS_HANDSHAKE_FAILED)                                                              \
    X(REASON_ALPN_MISMATCH, "alpn_mismatch", false, FAREWELL_NONE, STAT_MARK_TLS_ALPN_MISMATCH)    \
    X(REASON_HANDSHAKE_TIMEOUT, "handshake_timeout", false, FAREWELL_NONE,                         \
      STAT_MARK_TLS_HANDSHAKE_TIMEOUT)                                                             \
    X(REASON_IDLE_TIMEOUT, "idle_timeout", false, FAREWELL_TIMEOUT, STAT_MARK_NONE)                \
    X(REASON_TOTAL_TIMEOUT, "total_timeout", false, FAREWELL_TIMEOUT, STAT_MARK_NONE)              \
    X(REASON_BACKEND_TIMEOUT, "backend_timeout", false, FAREWELL_TIMEOUT, STAT_MARK_NONE)          \
    X(REASON_PROTOCOL_ERROR, "protocol_error", false, FAREWELL_PROTOCOL, STAT_MARK_NONE)           \
    X(REASON_TOO_MANY_ERRORS, "too_many_errors", false, FAREWELL_POLICY, STAT_MARK_NONE)           \
    X(REASON_TOO_MANY_COMMANDS, "too_many_commands", false, FAREWELL_POLICY,                       \
      STAT_MARK_REFUSED_LIMIT) /* max_preauth_commands */                                          \
    X(REASON_LINE_TOO_LONG, "line_too_long", false, FAREWELL_PROTOCOL, STAT_MARK_NONE)             \
    X(REASON_BUFFER_FULL, "buffer_full", false, FAREWELL_PROTOCOL, STAT_MARK_NONE)                 \
    X(REASON_AUTH_FAILED, "auth_failed", false, FAREWELL_POLICY, STAT_MARK_NONE)                   \
    X(REASON_SHUTDOWN, "shutdown", true, FAREWELL_SHUTDOWN, STAT_MARK_NONE)                        \
    X(REASON_LIMIT, "limit", false, FAREWELL_POLICY, STAT_MARK_REFUSED_LIMIT)                      \
    X(REASON_DENIED, "denied", false, FAREWELL_POLICY, STAT_MARK_REFUSED_ACCESS)                   \
    X(REASON_INTERNAL, "internal", false, FAREWELL_UNAVAILABLE, STAT_MARK_NONE)

enum close_reason {
#define MOAT_REASON_ID(id, name, orderly, farewell, mark) id,
    MOAT_CLOSE_REASONS(MOAT_REASON_ID)
#undef MOAT_REASON_ID
};

const char *log_event_name(enum log_event e);
enum stat_mark log_event_mark(enum log_event e);
const char *close_reason_name(enum close_reason r);
bool close_reason_orderly(enum close_reason r);
enum farewell close_reason_farewell(enum close_reason r);
enum stat_mark close_reason_mark(enum close_reason r);

#endif
