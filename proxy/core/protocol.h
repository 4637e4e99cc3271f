/*
 * protocol.h: the seam between the core and the protocol modules (protocols/NAME.c). A protocol
 * plugs in with one constant struct protocol; it sees bytes, lines and events, never a socket,
 * libev, wolfSSL, c-ares or SASL, and acts only through the session services declared here.
 * Calls go down (services), events come up (the table's callbacks).
 */
#ifndef MOAT_PROTOCOL_H
#define MOAT_PROTOCOL_H

#include <sys/socket.h>

#include "common.h"
#include "config.h"
#include "events.h"
#include "saslmech.h"
#include "sendermap.h"

struct session;

enum session_phase {
    PHASE_ACCEPT = 0,
    PHASE_HANDSHAKE, /* TLS handshake (implicit TLS or after STARTTLS) */
    PHASE_PREAUTH,   /* the protocol's dialogue before login / hand-off */
    PHASE_AUTH,      /* credentials being verified */
    PHASE_CONNECT,   /* connecting to a backend */
    PHASE_HANDOFF,   /* telling the backend who the client is, logging in */
    PHASE_COMMAND,   /* SMTP after hand-off: command-aware relay, between commands */
    PHASE_DATA,      /* SMTP message content */
    PHASE_RELAY,     /* byte relay */
    PHASE_CLOSING
};

/* Backend events the protocol receives through on_backend. */
enum backend_event {
    BACKEND_CONNECTED = 0, /* connected (and PROXY header sent if the identity says so) */
    BACKEND_FAILED,        /* every address failed or timed out */
    BACKEND_EOF,           /* backend closed before the relay phase */
    BACKEND_ERROR,         /* socket error before the relay phase */
    BACKEND_TIMEOUT        /* no reply within backend_reply while waiting for one */
};

struct auth_result {
    enum auth_status status;
    const char *user;      /* the canonical user name on AUTH_OK (may be set on AUTH_FAILED) */
    const char *challenge; /* AUTH_CONTINUE: base64, possibly empty */
};

/* What the DNS checks say at a decision point (dnscheck_policy.c). */
enum dns_verdict {
    DNS_VERDICT_PASS = 0, /* go on (also: no checks, not enforced here, or only logged) */
    DNS_VERDICT_PENDING,  /* not finished: on_dns_done follows; ask again then */
    DNS_VERDICT_REFUSE    /* refuse with the reply given (one line, no CRLF) */
};

/* What a backend hand-off can vouch for besides the client's own password: with one of these
 * the core offers mechanisms only the auth service can verify (CRAM-MD5, SCRAM-*). */
enum protocol_handoff {
    HANDOFF_XCLIENT = 1u << 0,     /* a backend with identity = xclient takes the login as told */
    HANDOFF_MASTER_USER = 1u << 1, /* a backend with a master_user logs in for the user */
};

/* The one-line refusals the core writes in the protocol's words before any dialogue (at
 * accept): the start below, then the host name and a space when names_host, then the core's
 * text and CRLF. NULL: the connection is closed without a word. */
struct protocol_refusals {
    const char *busy;   /* temporary: too many connections, try again later */
    const char *denied; /* permanent: [access] deny */
    bool names_host;
};

struct protocol {
    const char *name;
    size_t state_size; /* zeroed per session; session_proto_state() returns it */
    /* --- what the core needs to know of the protocol (data, read once per listener) --- */
    const char *alpn;         /* RFC 7301 id on implicit TLS and after STARTTLS (NULL: none) */
    const char *sasl_service; /* the SASL service name for verifier = sasl */
    uint32_t relay_idle_ms;   /* relay idle when [timeouts] relay_idle is unset (0: command) */
    struct protocol_refusals refusals;
    unsigned handoff; /* enum protocol_handoff bits */
    /* farewell may also be written into the byte relay (an IMAP untagged BYE may come at any
     * time, RFC 9051 §7.1.5); the core calls it there only between backend lines. */
    bool farewell_in_relay;
    /* --- events (hooks) --- */
    /* The session is ready to talk: plaintext accepted, or implicit TLS handshake done. */
    void (*on_start)(struct session *s);
    /* Client bytes (p, n) buffered; return how many were consumed. Called again when more
     * arrive, or after session_input_resume(). */
    size_t (*on_client_input)(struct session *s, const char *p, size_t n);
    /* The STARTTLS handshake completed: all earlier state must be forgotten. */
    void (*on_tls_ready)(struct session *s);
    void (*on_backend)(struct session *s, enum backend_event ev);
    /* Backend bytes before the relay phase; return how many were consumed. */
    size_t (*on_backend_input)(struct session *s, const char *p, size_t n);
    /* Say goodbye in the protocol's words before moat closes for reason r (timeouts, shutdown,
     * limits): what to say depends only on close_reason_farewell(r). Only write a reply; the
     * core closes. May be NULL. */
    void (*farewell)(struct session *s, enum close_reason r);
    /* Free resources, wipe secrets. May be NULL. */
    void (*on_close)(struct session *s);
    const char *(*state_name)(const struct session *s);
    /* A DNS verdict that was DNS_VERDICT_PENDING can now be asked again. May be NULL. */
    void (*on_dns_done)(struct session *s);
    /* The protocol's own timer (session_timer_start) expired. May be NULL if never started. */
    void (*on_timer)(struct session *s);
    /* The result of session_auth_verify(). May be NULL for protocols that never ask. */
    void (*on_auth_done)(struct session *s, const struct auth_result *r);
};

/* --- services the core offers to protocols --- */

void *session_proto_state(struct session *s);
const struct config *session_config(const struct session *s);
const struct config_listener *session_listener(const struct session *s);
const char *session_id(const struct session *s);
/* Client address as text ("192.0.2.7"), port, and the local address/port it connected to. */
const char *session_client_addr(const struct session *s);
unsigned session_client_port(const struct session *s);
const char *session_local_addr(const struct session *s);
unsigned session_local_port(const struct session *s);
const struct sockaddr *session_client_sockaddr(const struct session *s);
bool session_is_tls(const struct session *s);
enum session_phase session_phase(const struct session *s);
void session_set_phase(struct session *s, enum session_phase p);

/* Queue bytes for the client. Returns -1 if the client's output buffer is full; the session is
 * then closed with REASON_BUFFER_FULL. */
int session_reply(struct session *s, const char *p, size_t n);
int session_replyf(struct session *s, const char *fmt, ...) MOAT_PRINTF(2, 3);
/* prefix, then text (n bytes, e.g. a SASL challenge of any size), then CRLF. */
int session_reply_line(struct session *s, const char *prefix, const char *text, size_t n);
/* STARTTLS, called from on_client_input BEFORE queuing the go-ahead reply: on START_TLS_OK,
 * once the reply queued in this callback is flushed, every buffered client byte is discarded
 * and the TLS handshake starts; on_tls_ready follows. The protocol must not process further
 * input (the core stops delivering it). START_TLS_BUSY: [moat] max_tls_handshakes are in
 * progress; answer with the protocol's temporary refusal and go on in plaintext.
 * START_TLS_UNAVAILABLE: TLS is not possible here (no certificate, already TLS). */
enum start_tls_result { START_TLS_OK = 0, START_TLS_UNAVAILABLE, START_TLS_BUSY };
enum start_tls_result session_start_tls(struct session *s);
/* Stop / restart delivering client input (while waiting for the backend or an auth result). */
void session_input_pause(struct session *s);
void session_input_resume(struct session *s);

/* Connect to the listener's backend, addresses tried in order with the connect timeout. */
void session_backend_connect(struct session *s);
/* Drop the backend leg (e.g. after a failed login); session_backend_connect() may follow. */
void session_backend_close(struct session *s);
int session_backend_send(struct session *s, const char *p, size_t n);
int session_backend_sendf(struct session *s, const char *fmt, ...) MOAT_PRINTF(2, 3);
/* Bytes queued for the backend and not written yet (flow control for streamed content). */
size_t session_backend_pending(const struct session *s);
/* Pause client input until the backend's queued output has been written, then resume it (at
 * once if nothing is queued). For protocols that stream client bytes to the backend. */
void session_input_pause_until_backend_drained(struct session *s);
/* Arm / disarm the backend_reply timeout (BACKEND_TIMEOUT) while waiting for the backend. */
void session_backend_wait(struct session *s, bool waiting);
const char *session_backend_addr(const struct session *s);
/* Switch to a byte relay in both directions; bytes already buffered on either side are
 * forwarded. The protocol's input callbacks are not called any more. */
void session_relay(struct session *s);

/* Record the authenticated user for the log. */
void session_set_user(struct session *s, const char *user);
/* Count a protocol error; returns true when the session's max_errors is reached (the caller
 * then says goodbye and closes). */
bool session_count_error(struct session *s);
/* Count one command of the dialogue before login ([limits] max_preauth_commands); returns true
 * when it is one too many (the caller then says goodbye and closes with
 * REASON_TOO_MANY_COMMANDS). Like the error count it is the core's: STARTTLS does not reset it. */
bool session_count_command(struct session *s);
/* Close: the reply already queued is flushed first (bounded), then both legs close. */
void session_close(struct session *s, enum close_reason r);
/* Log one event line for this session: event plus a free-form detail (trusted text). */
void session_log(struct session *s, int level, enum log_event ev, const char *fmt, ...)
    MOAT_PRINTF(4, 5);
/* Log an event with one peer-supplied value, escaped by the logger. */
void session_log_peer(struct session *s, int level, enum log_event ev, const char *key,
                      const char *p, size_t n);

/* --- DNS checks (dnscheck.c, dnscheck_policy.c): started at accept, per [dns] and the
 * listener's dns_checks --- */

/* The client checks (reverse DNS, DNS lists, HELO) at a decision point. Only an enforcing
 * listener ever gets PENDING or REFUSE; elsewhere the outcome is only logged. */
enum dns_verdict session_dns_verdict(struct session *s, const char **reply_out);
/* The client's HELO/EHLO argument, for the HELO check (call again after a new EHLO). */
void session_dns_helo(struct session *s, const char *helo);
/* The client's forward-confirmed host name for XCLIENT NAME=, or "[UNAVAILABLE]" (none) or
 * "[TEMPUNAVAIL]" (a temporary failure, or not known yet). Always a valid LDH name. */
const char *session_client_name(struct session *s);
/* SPF of MAIL FROM (sender without <>, may be empty; helo for the null sender) on an MX
 * listener. *header_out, when not NULL, is a "Received-SPF: ...\r\n" line for the backend,
 * valid until the next call. */
enum dns_verdict session_spf_verdict(struct session *s, const char *sender, size_t n,
                                     const char *helo, const char **reply_out,
                                     const char **header_out);
/* --- URI block lists on message content (uribl.c): MX listeners with [dns] uribl --- */

/* A message's content starts (354): the previous message's scan and lookups are forgotten. */
void session_uribl_start(struct session *s);
/* Canonical content on its way to the backend: URL host names in it are looked up at once. */
void session_uribl_feed(struct session *s, const char *p, size_t n);
/* At the end of data, before the final dot: PASS (deliver), PENDING (answers outstanding:
 * on_dns_done follows, ask again; the protocol bounds the wait with [dns] uribl_timeout and then
 * asks with give_up, which counts what is outstanding as not listed), or REFUSE (do not deliver:
 * *reply_out is the one-line refusal, no CRLF). */
enum dns_verdict session_uribl_verdict(struct session *s, bool give_up, const char **reply_out);

/* --- protocol timer and per-client rates (session_limits.c) --- */

/* One protocol timer per session: on_timer follows after ms unless stopped or restarted. */
void session_timer_start(struct session *s, uint32_t ms);
void session_timer_stop(struct session *s);

enum client_rate { CLIENT_RATE_MESSAGES = 0, CLIENT_RATE_RECIPIENTS };
/* [limits] messages_per_client / recipients_per_client, shared by every session of the client
 * (IPv4 /32, IPv6 by ipv6_prefix): may the client have one more now? Nothing is counted; a
 * refusal is logged (and only logged, allowing it, with limits_mode = log). */
bool session_rate_allows(struct session *s, enum client_rate k);
/* One more accepted (the backend said 250). */
void session_rate_count(struct session *s, enum client_rate k);

/* --- authentication and brute-force control (session_auth.c) --- */

/* verifier = sasl: check c with Cyrus SASL off the loop; on_auth_done follows (never before this
 * returns). Client input is paused until then. A banned user or client fails without a check;
 * a job not done within [auth] verify_timeout is AUTH_TEMPFAIL. c is copied: wipe yours. */
void session_auth_verify(struct session *s, const struct credentials *c, enum sasl_mech m);
/* verifier = backend: whether this login must fail without being tried (user or client banned). */
bool session_auth_banned(struct session *s, const char *user, size_t user_len);
/* A failed login, whatever the cause (the client must not learn which): counted for the session,
 * the client's address and the user name, logged without the secret. reply is sent after the
 * growing failure delay, client input being held until then. The failure that uses up [auth]
 * max_failures sends final_reply instead, and the session then closes (REASON_AUTH_FAILED). */
void session_auth_failed(struct session *s, const char *user, size_t user_len, const char *mech,
                         const char *reply, const char *final_reply);
/* The mechanisms this listener offers once TLS is up (SASL_MECH_BIT mask): PLAIN and LOGIN as
 * [auth] mech_list says (both for verifier = backend), and with verifier = sasl those of
 * CRAM-MD5 / SCRAM-* that the installed plugins run and the hand-off can honour (for SMTP a
 * backend with identity xclient, for IMAP/POP3 a backend with a Dovecot master_user). */
unsigned session_auth_mechs(struct session *s);
/* verifier = sasl, a mechanism the auth service runs (sasl_mech_is_server(x->mech)): start the
 * exchange (x->has_resp false: no initial response) or feed the client's next line (x->resp,
 * wiped here). on_auth_done follows: AUTH_CONTINUE with the challenge, or the outcome. Input is
 * paused until then. */
void session_auth_step(struct session *s, struct sasl_exchange *x);
/* The client cancelled ("*") or the protocol gave up between steps: the exchange is dropped. */
void session_auth_abort(struct session *s);
/* A successful login: records the user and logs event=login user= mech= verifier=. */
void session_auth_login(struct session *s, const char *user, size_t user_len, const char *mech);

const char *session_phase_name(enum session_phase p);

#endif
