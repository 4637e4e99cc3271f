/*
 * config.h: moat's configuration as one immutable generation. config_load() parses an INI file
 * (libinih) into a struct config, applies every default, checks every value and collects every
 * error as "FILE:LINE: key: what is wrong". A generation is refcounted: live sessions keep theirs
 * across a reload. Nothing here opens sockets or touches TLS; value parsers live in confval.h.
 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include <stdatomic.h>
#include <sys/socket.h>

#include "common.h"
#include "confval.h"
#include "dns.h"

enum listener_proto { LPROTO_SMTP = 0, LPROTO_SUBMISSION, LPROTO_IMAP, LPROTO_POP3 };
enum listener_tls { LTLS_NONE = 0, LTLS_STARTTLS, LTLS_IMPLICIT };
enum backend_identity { IDENT_NONE = 0, IDENT_XCLIENT, IDENT_PROXY_V1, IDENT_PROXY_V2, IDENT_ID };
enum auth_verifier { VERIFIER_BACKEND = 0, VERIFIER_SASL };
enum pwcheck_method { PWCHECK_AUXPROP = 0, PWCHECK_SASLAUTHD };
enum bare_newline { BARE_NEWLINE_NORMALIZE = 0, BARE_NEWLINE_REJECT };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };
enum control_mode { MODE_ENFORCE = 0, MODE_LOG };
/* PROXY protocol on a listener: which header versions a trusted balancer may send first. */
enum proxy_accept { PROXY_ACCEPT_OFF = 0, PROXY_ACCEPT_V1, PROXY_ACCEPT_V2, PROXY_ACCEPT_ANY };

struct sender_map;
struct protocol;

/* Per listener: auto = enforce on an MX (smtp) listener, log elsewhere. */
enum dns_checks_mode { DNS_CHECKS_AUTO = 0, DNS_CHECKS_OFF, DNS_CHECKS_LOG, DNS_CHECKS_ENFORCE };

/* The longest user name and password moat handles (SASL exchanges, a master_password). */
#define SASL_USER_MAX 255
#define SASL_PASS_MAX 1024

#define CONFIG_MAX_ADDRS 8
#define CONFIG_MAX_CERTS 8

struct config_limits {
    uint32_t max_sessions_per_ip;       /* 0 = unlimited */
    struct rate connection_rate_per_ip; /* count 0 = unlimited */
    size_t client_buffer_bytes;         /* cap of the client-side input and output buffers */
    size_t backend_buffer_bytes;        /* cap of the backend-side input and output buffers */
    size_t message_size_bytes;          /* SMTP SIZE; enforced on DATA */
    uint32_t max_recipients;            /* per message */
    uint32_t max_errors;                /* per session, then 421 / BYE / -ERR and close */
    uint32_t max_preauth_commands;      /* commands before authentication/hand-off */
    struct rate messages_per_client;
    struct rate recipients_per_client;
    uint32_t ipv6_prefix;   /* per-client key: IPv6 addresses cut to this many bits */
    enum control_mode mode; /* limits_mode: enforce, or log what would be refused */
};

struct config_timeouts {
    uint32_t tls_first_byte_ms;  /* TLS phase until the client's first byte (a silent socket) */
    uint32_t handshake_ms;       /* TLS handshake, absolute: trickled bytes do not extend it */
    uint32_t preauth_idle_ms;    /* idle before login / hand-off */
    uint32_t preauth_total_ms;   /* whole pre-auth phase, absolute */
    uint32_t command_ms;         /* SMTP: waiting for the next command after hand-off */
    uint32_t data_ms;            /* SMTP: no DATA bytes */
    uint32_t backend_reply_ms;   /* waiting for a backend reply */
    uint32_t relay_idle_ms;      /* byte relay idle; 0 = protocol default (IMAP 31m, POP3 10m) */
    uint32_t backend_connect_ms; /* per backend address */
    uint32_t proxy_header_ms;    /* PROXY protocol listeners: the whole header, absolute */
};

struct config_auth {
    enum auth_verifier verifier;
    uint32_t max_failures;         /* per session, then close */
    uint32_t failure_delay_ms;     /* first failure delay; doubles */
    uint32_t failure_delay_max_ms; /* cap */
    struct rate ban_ip;            /* failures per client (IPv4 /32, IPv6 /64) per window */
    struct rate ban_user;          /* failures per user name per window */
    uint32_t ban_time_ms;
    char *sasldb_path;
    char *saslauthd_path;
    char *mech_list;
    enum pwcheck_method pwcheck_method; /* sasl: auxprop (sasldb) or saslauthd */
    char *realm;                        /* sasl: user_realm for sasl_server_new; NULL = none */
    uint32_t verify_timeout_ms;         /* sasl: a job not done by then is a temporary failure */
    uint32_t max_checks_per_client;     /* sasl: checks one client may have in the pool */
    uint32_t familiar_window_ms;        /* a login from here keeps it usable under a user ban */
};

struct config_access {
    struct cidr_list allow;
    struct cidr_list deny;
    enum control_mode mode;
};

struct config_cert {
    char *cert_file;
    char *key_file;
    int line; /* where it was named, for errors found later */
};

struct config_tls {
    struct config_cert certs[CONFIG_MAX_CERTS];
    size_t ncerts;
    int min_version;   /* 12 or 13 */
    char *ciphers;     /* wolfSSL suite names, colon-separated */
    char *groups;      /* "X25519:P-256" */
    bool alpn_strict;  /* abort the handshake when the client's ALPN has no match */
    bool sni_strict;   /* refuse an SNI name that no certificate answers to */
    bool sni_required; /* refuse a handshake without SNI */
    uint32_t ticket_lifetime_ms;
};

/* [cluster]: limits, rates and bans shared by several moats through Redis (cluster.c). */
struct config_cluster {
    struct sockaddr_storage redis_addr;
    socklen_t redis_addr_len;    /* 0 = off: local counters only */
    char *username;              /* Redis 6 ACL user; NULL = none */
    char *password;              /* never logged; NULL = no AUTH */
    char *prefix;                /* of every key */
    uint32_t timeout_ms;         /* a reply later than this: decide locally */
    uint32_t connect_timeout_ms; /* per connection attempt */
    uint32_t lease_ms;           /* a session count lives this long unless renewed */
};

struct config_backend {
    char *name;
    struct sockaddr_storage addrs[CONFIG_MAX_ADDRS];
    socklen_t addr_lens[CONFIG_MAX_ADDRS];
    size_t naddrs;
    enum backend_identity identity;
    char *helo_name; /* what moat says in its own EHLO to the backend; default: [moat] hostname */
    /* Dovecot master user: IMAP/POP3 logins verified by moat without a password (CRAM-MD5,
     * SCRAM) log in as "<user><separator><master_user>" with the master password */
    char *master_user;
    char *master_password_file;
    char *master_separator; /* default "*" */
    char *master_password;  /* read from the file at load; wiped on free; never logged */
    int line;
    struct config_backend *next;
};

struct config_listener {
    char *name;
    enum listener_proto proto;
    enum listener_tls tls;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char *backend_name;
    struct config_backend *backend; /* resolved after parsing */
    char *local_domains;            /* space/comma separated; SMTP MX */
    bool auth;                      /* whether AUTH is offered (after TLS); default per protocol */
    bool sender_login_match;        /* authenticated: MAIL FROM must belong to the login */
    char *sender_login_map;         /* optional map file "address login[,login]" */
    struct sender_map *sender_map;  /* loaded from sender_login_map (NULL: exact match only) */
    enum bare_newline bare_newline;
    bool smtputf8;
    bool dsn;
    bool greet_pause_set;
    uint32_t greet_pause_ms;
    enum control_mode greet_mode; /* early talkers: enforce (refuse), or log only */
    /* effective values: the global sections with this listener's overrides applied */
    struct config_limits limits;
    struct config_timeouts timeouts;
    struct config_auth auth_conf;
    struct config_access access;
    enum dns_checks_mode dns_checks;
    enum proxy_accept proxy_protocol; /* a balancer's PROXY header first (off: none) */
    struct cidr_list proxy_trusted;   /* who may send it; anyone else is closed at once */
    const struct protocol *protocol;  /* the protocol table, bound once at load (protocols/) */
    int line;
    struct config_listener *next;
};

struct config {
    atomic_int refs;
    char *path;
    /* [moat] */
    char *hostname;
    uint32_t workers; /* 0 = number of cores */
    char *user;
    char *group;
    bool allow_root; /* keep running as root when no user is set (default: refuse) */
    enum log_format log_format;
    char *log_file; /* NULL = stderr */
    int log_level;  /* 0 error, 1 warn, 2 info, 3 debug */
    struct sockaddr_storage metrics_addr;
    socklen_t metrics_addr_len; /* 0 = off */
    uint32_t max_sessions;
    uint32_t max_tls_handshakes;
    uint32_t max_tracked_clients; /* entries of the per-client table (fixed at startup) */
    uint32_t max_tracked_users;   /* entries of the user-name failure/ban table (same) */
    uint32_t max_familiar;        /* (user, address) pairs of the familiar table (same) */
    uint32_t auth_threads;        /* the sasl verifier's pool (same) */
    uint32_t shutdown_grace_ms;
    /* global sections */
    struct config_tls tls;
    struct config_limits limits;
    struct config_timeouts timeouts;
    struct config_auth auth;
    struct config_access access;
    struct config_dns dns;
    struct config_cluster cluster;
    struct config_backend *backends;
    struct config_listener *listeners;
};

/* Errors collected while loading: each is "FILE:LINE: key: what is wrong". */
struct config_errors {
    char **lines;
    size_t n;
};

/* Parse and check FILE. On success returns a generation with refs = 1 and errs->n == 0.
 * On failure returns NULL with every problem found in errs (never just the first), sorted by
 * line. errs is overwritten (may be NULL); free it with config_errors_free() either way.
 * Not thread-safe (libinih's options are process globals): load from one thread at a time. */
struct config *config_load(const char *path, struct config_errors *errs);
/* The same from a string, for tests and the fuzz target; name is used in messages. */
struct config *config_load_string(const char *name, const char *text, struct config_errors *errs);
void config_errors_free(struct config_errors *errs);

struct config *config_ref(struct config *c);
/* Drops a reference; the last one frees the generation with config_free(). */
void config_unref(struct config *c);
/* Frees a generation regardless of its refs (for a config nobody else has seen); NULL is fine. */
void config_free(struct config *c);

struct config_backend *config_backend_find(const struct config *c, const char *name);
const char *listener_proto_name(enum listener_proto p);
const char *listener_tls_name(enum listener_tls t);
const char *backend_identity_name(enum backend_identity i);
const char *proxy_accept_name(enum proxy_accept p);

#endif
