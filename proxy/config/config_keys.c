/*
 * config_keys.c: the table of every configuration key {section, key, type, offset, default} and
 * the code that parses one value into its field, reporting "bad duration '5x': ..." through the
 * loader. Defaults are strings parsed like the file, so the table is the one place they live.
 * It only checks that certificate, key and list files can be read; it never parses them as TLS.
 * The names of enumerated values and the backend lookup are here too, below every stage.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_impl.h"

#define TLS_CIPHERS_DEFAULT                                                                        \
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"              \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:"     \
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"

static const struct enum_name log_format_names[] = {
    {"text", LOG_FORMAT_TEXT}, {"json", LOG_FORMAT_JSON}, {NULL, 0}};
static const struct enum_name log_level_names[] = {
    {"error", 0}, {"warn", 1}, {"info", 2}, {"debug", 3}, {NULL, 0}};
static const struct enum_name tls_version_names[] = {{"1.2", 12}, {"1.3", 13}, {NULL, 0}};
static const struct enum_name verifier_names[] = {
    {"backend", VERIFIER_BACKEND}, {"sasl", VERIFIER_SASL}, {NULL, 0}};
static const struct enum_name pwcheck_names[] = {
    {"auxprop", PWCHECK_AUXPROP}, {"saslauthd", PWCHECK_SASLAUTHD}, {NULL, 0}};
static const struct enum_name mode_names[] = {
    {"enforce", MODE_ENFORCE}, {"log", MODE_LOG}, {NULL, 0}};
static const struct enum_name identity_names[] = {
    {"xclient", IDENT_XCLIENT}, {"proxy-v1", IDENT_PROXY_V1}, {"proxy-v2", IDENT_PROXY_V2},
    {"id", IDENT_ID},           {"none", IDENT_NONE},         {NULL, 0}};
static const struct enum_name proxy_accept_names[] = {{"off", PROXY_ACCEPT_OFF},
                                                      {"v1", PROXY_ACCEPT_V1},
                                                      {"v2", PROXY_ACCEPT_V2},
                                                      {"any", PROXY_ACCEPT_ANY},
                                                      {NULL, 0}};
static const struct enum_name proto_names[] = {{"smtp", LPROTO_SMTP},
                                               {"submission", LPROTO_SUBMISSION},
                                               {"imap", LPROTO_IMAP},
                                               {"pop3", LPROTO_POP3},
                                               {NULL, 0}};
static const struct enum_name ltls_names[] = {
    {"implicit", LTLS_IMPLICIT}, {"starttls", LTLS_STARTTLS}, {"none", LTLS_NONE}, {NULL, 0}};
static const struct enum_name bare_newline_names[] = {
    {"normalize", BARE_NEWLINE_NORMALIZE}, {"reject", BARE_NEWLINE_REJECT}, {NULL, 0}};

static const struct enum_name dns_policy_names[] = {{"off", DNS_POLICY_OFF},
                                                    {"warn", DNS_POLICY_WARN},
                                                    {"dry-run", DNS_POLICY_DRY_RUN},
                                                    {"reject", DNS_POLICY_REJECT},
                                                    {NULL, 0}};
static const struct enum_name dns_checks_names[] = {{"auto", DNS_CHECKS_AUTO},
                                                    {"off", DNS_CHECKS_OFF},
                                                    {"log", DNS_CHECKS_LOG},
                                                    {"enforce", DNS_CHECKS_ENFORCE},
                                                    {NULL, 0}};

#define K(sec, name, type, st, field, dflt, min, max, names, flags)                                \
    {                                                                                              \
        sec, name, type, offsetof(st, field), 0, dflt, min, max, names, flags                      \
    }
#define MOAT(name, type, field, dflt, min, max, names)                                             \
    K(SEC_MOAT, name, type, struct config, field, dflt, min, max, names, 0)
#define TLS(name, type, field, dflt, names, flags)                                                 \
    K(SEC_TLS, name, type, struct config_tls, field, dflt, 0, 0, names, flags)
#define LIM(name, type, field, dflt, min, max)                                                     \
    K(SEC_LIMITS, name, type, struct config_limits, field, dflt, min, max, NULL, 0)
#define TMO(name, field, dflt, min)                                                                \
    K(SEC_TIMEOUTS, name, KT_DURATION, struct config_timeouts, field, dflt, min, 0, NULL, 0)
#define AUTH(name, type, field, dflt, min, max, names)                                             \
    K(SEC_AUTH, name, type, struct config_auth, field, dflt, min, max, names, 0)
#define ACC(name, type, field, dflt, names, flags)                                                 \
    K(SEC_ACCESS, name, type, struct config_access, field, dflt, 0, 0, names, flags)
#define DNS(name, type, field, dflt, min, max, names)                                              \
    K(SEC_DNS, name, type, struct config_dns, field, dflt, min, max, names, 0)
#define BACK(name, type, field, names, flags)                                                      \
    K(SEC_BACKEND, name, type, struct config_backend, field, NULL, 0, 0, names, flags)
#define LSN(name, type, field, dflt, names)                                                        \
    K(SEC_LISTENER, name, type, struct config_listener, field, dflt, 0, 0, names, 0)

/* Every key moat knows. Defaults are written as they would be in the file and parsed like it. */
const struct key_def config_keys[] = {
    MOAT("hostname", KT_STR, hostname, NULL, 0, 0, NULL),
    MOAT("workers", KT_UINT_AUTO, workers, "auto", 0, 1024, NULL),
    MOAT("user", KT_STR, user, NULL, 0, 0, NULL),
    MOAT("group", KT_STR, group, NULL, 0, 0, NULL),
    MOAT("allow_root", KT_BOOL, allow_root, "no", 0, 0, NULL),
    MOAT("log_format", KT_ENUM, log_format, "text", 0, 0, log_format_names),
    MOAT("log_file", KT_STR, log_file, NULL, 0, 0, NULL),
    MOAT("log_level", KT_ENUM, log_level, "info", 0, 0, log_level_names),
    {SEC_MOAT, "metrics", KT_ADDR_OFF, offsetof(struct config, metrics_addr),
     offsetof(struct config, metrics_addr_len), "off", 0, 0, NULL, 0},
    MOAT("max_sessions", KT_UINT, max_sessions, "10000", 1, 10000000, NULL),
    MOAT("max_tls_handshakes", KT_UINT, max_tls_handshakes, "256", 1, 1000000, NULL),
    MOAT("max_tracked_clients", KT_UINT, max_tracked_clients, "65536", 16, 16777216, NULL),
    MOAT("max_tracked_users", KT_UINT, max_tracked_users, "8192", 16, 16777216, NULL),
    MOAT("max_familiar", KT_UINT, max_familiar, "16384", 8, 16777216, NULL),
    MOAT("auth_threads", KT_UINT, auth_threads, "3", 1, 64, NULL),
    MOAT("shutdown_grace", KT_DURATION, shutdown_grace_ms, "30s", 0, 0, NULL),

    TLS("certificate", KT_CERT, certs, NULL, NULL, KF_REPEAT),
    TLS("key", KT_KEY, certs, NULL, NULL, KF_REPEAT),
    TLS("min_version", KT_ENUM, min_version, "1.2", tls_version_names, 0),
    TLS("ciphers", KT_STR, ciphers, TLS_CIPHERS_DEFAULT, NULL, 0),
    TLS("groups", KT_STR, groups, "X25519:P-256:P-384", NULL, 0),
    TLS("alpn_strict", KT_BOOL, alpn_strict, "yes", NULL, 0),
    TLS("sni_strict", KT_BOOL, sni_strict, "no", NULL, 0),
    TLS("sni_required", KT_BOOL, sni_required, "no", NULL, 0),
    TLS("ticket_lifetime", KT_DURATION, ticket_lifetime_ms, "1h", NULL, 0),

    LIM("max_sessions_per_ip", KT_UINT, max_sessions_per_ip, "20", 0, 1000000),
    LIM("connection_rate_per_ip", KT_RATE, connection_rate_per_ip, "60/1m", 0, 0),
    LIM("client_buffer", KT_SIZE, client_buffer_bytes, "32k", 4096, 16u << 20),
    LIM("backend_buffer", KT_SIZE, backend_buffer_bytes, "32k", 4096, 16u << 20),
    LIM("message_size", KT_SIZE, message_size_bytes, "10240000", 0, UINT64_MAX),
    LIM("max_recipients", KT_UINT, max_recipients, "100", 1, 100000),
    LIM("max_errors", KT_UINT, max_errors, "10", 1, 100000),
    LIM("max_preauth_commands", KT_UINT, max_preauth_commands, "50", 1, 100000),
    LIM("messages_per_client", KT_RATE, messages_per_client, "500/1h", 0, 0),
    LIM("recipients_per_client", KT_RATE, recipients_per_client, "2000/1h", 0, 0),
    LIM("ipv6_prefix", KT_UINT, ipv6_prefix, "64", 1, 128),
    K(SEC_LIMITS, "limits_mode", KT_ENUM, struct config_limits, mode, "enforce", 0, 0, mode_names,
      0),

    TMO("tls_first_byte", tls_first_byte_ms, "5s", 1),
    TMO("handshake", handshake_ms, "10s", 1),
    TMO("preauth_idle", preauth_idle_ms, "60s", 1),
    TMO("preauth_total", preauth_total_ms, "5m", 1),
    TMO("command", command_ms, "5m", 1),
    TMO("data", data_ms, "3m", 1),
    TMO("backend_reply", backend_reply_ms, "10m", 1),
    TMO("relay_idle", relay_idle_ms, "0", 0),
    TMO("backend_connect", backend_connect_ms, "5s", 1),
    TMO("proxy_header", proxy_header_ms, "3s", 1),

    AUTH("verifier", KT_ENUM, verifier, "backend", 0, 0, verifier_names),
    AUTH("max_failures", KT_UINT, max_failures, "3", 1, 1000, NULL),
    AUTH("failure_delay", KT_DURATION, failure_delay_ms, "1s", 0, 0, NULL),
    AUTH("failure_delay_max", KT_DURATION, failure_delay_max_ms, "15s", 0, 0, NULL),
    AUTH("ban_ip", KT_RATE, ban_ip, "10/10m", 0, 0, NULL),
    AUTH("ban_user", KT_RATE, ban_user, "10/10m", 0, 0, NULL),
    AUTH("ban_time", KT_DURATION, ban_time_ms, "10m", 0, 0, NULL),
    AUTH("sasldb_path", KT_STR, sasldb_path, NULL, 0, 0, NULL),
    AUTH("saslauthd_path", KT_STR, saslauthd_path, NULL, 0, 0, NULL),
    AUTH("mech_list", KT_STR, mech_list, "PLAIN LOGIN", 0, 0, NULL),
    AUTH("pwcheck_method", KT_ENUM, pwcheck_method, "auxprop", 0, 0, pwcheck_names),
    AUTH("realm", KT_STR, realm, NULL, 0, 0, NULL),
    AUTH("verify_timeout", KT_DURATION, verify_timeout_ms, "15s", 0, 0, NULL),
    AUTH("max_checks_per_client", KT_UINT, max_checks_per_client, "1", 0, 64, NULL),
    AUTH("familiar_window", KT_DURATION, familiar_window_ms, "30d", 0, 0, NULL),

    ACC("allow", KT_CIDRS, allow, NULL, NULL, KF_REPEAT),
    ACC("deny", KT_CIDRS, deny, NULL, NULL, KF_REPEAT),
    ACC("mode", KT_ENUM, mode, "enforce", mode_names, 0),

    /* [dns]: every check is off until configured (they depend on a working resolver) */
    DNS("servers", KT_STR, servers, NULL, 0, 0, NULL),
    DNS("timeout", KT_DURATION, timeout_ms, "1500ms", 1, 0, NULL),
    DNS("tries", KT_UINT, tries, "2", 1, 10, NULL),
    DNS("cache_size", KT_UINT, cache_size, "10000", 16, 10000000, NULL),
    DNS("cache_bytes", KT_SIZE, cache_bytes, "4M", 65536, 1ull << 32, NULL),
    DNS("cache_max_ttl", KT_DURATION, cache_max_ttl_ms, "1h", 0, 0, NULL),
    DNS("negative_ttl", KT_DURATION, negative_ttl_ms, "5m", 0, 0, NULL),
    DNS("tempfail_ttl", KT_DURATION, tempfail_ttl_ms, "30s", 0, 0, NULL),
    DNS("fcrdns", KT_ENUM, fcrdns, "off", 0, 0, dns_policy_names),
    DNS("helo_check", KT_ENUM, helo_check, "off", 0, 0, dns_policy_names),
    DNS("helo_resolve", KT_BOOL, helo_resolve, "no", 0, 0, NULL),
    DNS("dnsbl", KT_STR, dnsbl, NULL, 0, 0, NULL),
    DNS("dnsbl_action", KT_ENUM, dnsbl_action, "reject", 0, 0, dns_policy_names),
    DNS("dnsbl_threshold", KT_UINT, dnsbl_threshold, "1", 1, 100000, NULL),
    DNS("dnsbl_allowlist_threshold", KT_STR, dnsbl_allowlist_threshold_text, "0", 0, 0, NULL),
    DNS("spf", KT_ENUM, spf, "off", 0, 0, dns_policy_names),
    DNS("uribl", KT_STR, uribl, NULL, 0, 0, NULL),
    DNS("uribl_ip_zones", KT_STR, uribl_ip_zones, NULL, 0, 0, NULL),
    DNS("uribl_policy", KT_ENUM, uribl_policy, "reject", 0, 0, dns_policy_names),
    DNS("uribl_threshold", KT_UINT, uribl_threshold, "1", 1, 100000, NULL),
    DNS("uribl_max_lookups", KT_UINT, uribl_max_lookups, "40", 1, 1000, NULL),
    DNS("uribl_max_bytes", KT_SIZE, uribl_max_bytes, "2M", 1024, 1ull << 30, NULL),
    DNS("uribl_max_depth", KT_UINT, uribl_max_depth, "8", 1, 16, NULL),
    DNS("uribl_max_parts", KT_UINT, uribl_max_parts, "64", 1, 10000, NULL),
    DNS("uribl_timeout", KT_DURATION, uribl_timeout_ms, "5s", 1, 0, NULL),

    /* [cluster]: off until redis is set */
    {SEC_CLUSTER, "redis", KT_ADDR_OFF, offsetof(struct config_cluster, redis_addr),
     offsetof(struct config_cluster, redis_addr_len), "off", 0, 0, NULL, 0},
    K(SEC_CLUSTER, "username", KT_STR, struct config_cluster, username, NULL, 0, 0, NULL, 0),
    K(SEC_CLUSTER, "password", KT_STR, struct config_cluster, password, NULL, 0, 0, NULL, 0),
    K(SEC_CLUSTER, "prefix", KT_STR, struct config_cluster, prefix, "moat:", 0, 0, NULL, 0),
    K(SEC_CLUSTER, "timeout", KT_DURATION, struct config_cluster, timeout_ms, "100ms", 1, 0, NULL,
      0),
    K(SEC_CLUSTER, "connect_timeout", KT_DURATION, struct config_cluster, connect_timeout_ms, "1s",
      1, 0, NULL, 0),
    K(SEC_CLUSTER, "lease", KT_DURATION, struct config_cluster, lease_ms, "30s", 1, 0, NULL, 0),

    BACK("address", KT_BACKEND_ADDRS, addrs, NULL, KF_REPEAT),
    BACK("identity", KT_ENUM, identity, identity_names, 0),
    BACK("helo_name", KT_STR, helo_name, NULL, 0),
    BACK("master_user", KT_STR, master_user, NULL, 0),
    BACK("master_password_file", KT_STR, master_password_file, NULL, 0),
    BACK("master_separator", KT_STR, master_separator, NULL, 0),

    LSN("protocol", KT_ENUM, proto, NULL, proto_names),
    {SEC_LISTENER, "listen", KT_ADDR, offsetof(struct config_listener, addr),
     offsetof(struct config_listener, addr_len), NULL, 0, 0, NULL, 0},
    LSN("tls", KT_ENUM, tls, "starttls", ltls_names),
    LSN("backend", KT_STR, backend_name, NULL, NULL),
    LSN("local_domains", KT_STR, local_domains, NULL, NULL),
    LSN("auth", KT_BOOL, auth, NULL, NULL),
    LSN("sender_login_match", KT_BOOL, sender_login_match, "yes", NULL),
    LSN("sender_login_map", KT_STR, sender_login_map, NULL, NULL),
    LSN("bare_newline", KT_ENUM, bare_newline, "normalize", bare_newline_names),
    LSN("dns_checks", KT_ENUM, dns_checks, "auto", dns_checks_names),
    LSN("smtputf8", KT_BOOL, smtputf8, "yes", NULL),
    LSN("dsn", KT_BOOL, dsn, "yes", NULL),
    LSN("greet_pause", KT_DURATION, greet_pause_ms, "0", NULL),
    LSN("greet_mode", KT_ENUM, greet_mode, "enforce", mode_names),
    LSN("proxy_protocol", KT_ENUM, proxy_protocol, "off", proxy_accept_names),
    K(SEC_LISTENER, "proxy_trusted", KT_CIDRS, struct config_listener, proxy_trusted, NULL, 0, 0,
      NULL, KF_REPEAT),
};
const size_t config_nkeys = ARRAY_SIZE(config_keys);

static const char *const section_names[] = {
    [SEC_MOAT] = "moat",         [SEC_TLS] = "tls",           [SEC_LIMITS] = "limits",
    [SEC_TIMEOUTS] = "timeouts", [SEC_AUTH] = "auth",         [SEC_ACCESS] = "access",
    [SEC_BACKEND] = "backend",   [SEC_LISTENER] = "listener", [SEC_DNS] = "dns",
    [SEC_CLUSTER] = "cluster"};

const char *
config_section_name(enum section_kind kind)
{
    return kind < ARRAY_SIZE(section_names) ? section_names[kind] : "?";
}

const struct key_def *
config_key_find(enum section_kind kind, const char *key)
{
    for (size_t i = 0; i < config_nkeys; i++) {
        if (config_keys[i].section == kind && strcmp(config_keys[i].key, key) == 0)
            return &config_keys[i];
    }
    return NULL;
}

const char *
config_show(char *buf, size_t size, const char *s)
{
    size_t i = 0, n = strlen(s);

    MOAT_ASSERT(size >= 8);
    for (; i < n && i + 4 < size; i++)
        buf[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    if (i < n) {
        i = size - 4;
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

void
config_error(struct loader *ld, int line, const char *key, const char *fmt, ...)
{
    char msg[512], shown[CONFIG_NAME_MAX + 8];
    va_list ap;

    ld->nerrors++;
    if (ld->nerrs >= CONFIG_ERRORS_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ld->errs = xrealloc(ld->errs, (ld->nerrs + 1) * sizeof(*ld->errs));
    struct load_error *e = &ld->errs[ld->nerrs];
    e->line = line;
    e->seq = ld->nerrs++;
    size_t len = strlen(ld->name) + strlen(msg) + sizeof(shown) + 32;
    e->text = xcalloc(1, len);
    snprintf(e->text, len, "%s:%d: %s: %s", ld->name, line, config_show(shown, sizeof(shown), key),
             msg);
}

/* Check that a certificate or key file can be opened for reading. */
static void
config_check_readable(struct loader *ld, int line, const char *key, const char *path)
{
    char shown[256];
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

    config_show(shown, sizeof(shown), path);
    if (fd < 0) {
        config_error(ld, line, key, "cannot read '%s': %s", shown, strerror(errno));
        return;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        config_error(ld, line, key, "cannot read '%s': not a regular file", shown);
    close(fd);
}

static void
config_apply_cert(struct loader *ld, struct config_tls *tls, const char *value, int line)
{
    if (tls->ncerts == CONFIG_MAX_CERTS) {
        config_error(ld, line, "certificate", "more than %d certificates", CONFIG_MAX_CERTS);
        return;
    }
    config_check_readable(ld, line, "certificate", value);
    tls->certs[tls->ncerts].cert_file = xstrdup(value);
    tls->certs[tls->ncerts].line = line;
    tls->ncerts++;
}

static void
config_apply_key(struct loader *ld, struct config_tls *tls, const char *value, int line)
{
    struct config_cert *cert;

    if (tls->ncerts == 0) {
        config_error(ld, line, "key", "no certificate before this key");
        return;
    }
    cert = &tls->certs[tls->ncerts - 1];
    if (cert->key_file != NULL) {
        config_error(ld, line, "key", "the certificate of line %d already has a key", cert->line);
        return;
    }
    config_check_readable(ld, line, "key", value);
    cert->key_file = xstrdup(value);
}

/* Split value at spaces, tabs and commas; call fn for each word. */
static void
config_words(struct loader *ld, const char *value, int line, const struct key_def *k, void *target,
             void (*fn)(struct loader *, const char *, int, const struct key_def *, void *))
{
    char *copy = xstrdup(value), *save = NULL;

    for (char *w = strtok_r(copy, " \t,", &save); w != NULL; w = strtok_r(NULL, " \t,", &save))
        fn(ld, w, line, k, target);
    free(copy);
}

static void
config_add_backend_addr(struct loader *ld, const char *word, int line, const struct key_def *k,
                        void *target)
{
    struct config_backend *b = target;
    const char *err;
    char shown[CONFIG_NAME_MAX + 8];

    if (b->naddrs == CONFIG_MAX_ADDRS) {
        config_error(ld, line, k->key, "more than %d addresses", CONFIG_MAX_ADDRS);
        return;
    }
    if (confval_addr(word, &b->addrs[b->naddrs], &b->addr_lens[b->naddrs], &err) != 0) {
        config_error(ld, line, k->key, "bad address '%s': %s",
                     config_show(shown, sizeof(shown), word), err);
        return;
    }
    b->naddrs++;
}

static void
config_add_cidr(struct loader *ld, const char *word, int line, const struct key_def *k,
                void *target)
{
    struct cidr_list *list = target;
    struct cidr c;
    const char *err;
    char shown[256];
    int bad_line;

    if (strncmp(word, "file:", 5) == 0) {
        config_show(shown, sizeof(shown), word + 5);
        if (cidr_list_add_file(list, word + 5, &err, &bad_line) == 0)
            return;
        if (bad_line == 0)
            config_error(ld, line, k->key, "cannot read '%s': %s", shown, err);
        else
            config_error(ld, line, k->key, "'%s' line %d: %s", shown, bad_line, err);
        return;
    }
    if (confval_cidr(word, &c, &err) != 0) {
        config_error(ld, line, k->key, "bad CIDR '%s': %s", config_show(shown, sizeof(shown), word),
                     err);
        return;
    }
    cidr_list_add(list, &c);
}

static int
config_parse_enum(const struct key_def *k, const char *value, int *out, char *err, size_t size)
{
    size_t used;

    for (const struct enum_name *e = k->names; e->name != NULL; e++) {
        if (strcmp(e->name, value) == 0) {
            *out = e->value;
            return 0;
        }
    }
    used = (size_t)snprintf(err, size, "expected one of");
    for (const struct enum_name *e = k->names; e->name != NULL && used < size; e++)
        used +=
            (size_t)snprintf(err + used, size - used, "%s %s", e == k->names ? "" : ",", e->name);
    return -1;
}

/* Parse a number, duration or size into field; -1 with err set on a bad or out-of-range value. */
static int
config_parse_number(const struct key_def *k, const char *value, void *field, const char **err,
                    char *buf, size_t size)
{
    uint32_t u;
    size_t sz;

    if (k->type == KT_UINT || k->type == KT_UINT_AUTO) {
        if (k->type == KT_UINT_AUTO && strcmp(value, "auto") == 0) {
            *(uint32_t *)field = 0;
            return 0;
        }
        if (confval_uint(value, (uint32_t)k->max, &u, err) != 0)
            return -1;
        if (u < k->min) {
            snprintf(buf, size, "must be at least %u", (unsigned)k->min);
            *err = buf;
            return -1;
        }
        *(uint32_t *)field = u;
        return 0;
    }
    if (k->type == KT_DURATION) {
        if (confval_duration_ms(value, &u, err) != 0)
            return -1;
        if (u < k->min) {
            *err = "must not be 0";
            return -1;
        }
        *(uint32_t *)field = u;
        return 0;
    }
    MOAT_ASSERT(k->type == KT_SIZE);
    if (confval_size(value, &sz, err) != 0)
        return -1;
    if (sz < k->min || sz > k->max) {
        snprintf(buf, size, "must be from %llu to %llu bytes", (unsigned long long)k->min,
                 (unsigned long long)k->max);
        *err = buf;
        return -1;
    }
    *(size_t *)field = sz;
    return 0;
}

static const char *
config_type_word(enum key_type type)
{
    switch (type) {
    case KT_UINT:
    case KT_UINT_AUTO:
        return "number";
    case KT_DURATION:
        return "duration";
    case KT_SIZE:
        return "size";
    case KT_RATE:
        return "rate";
    case KT_BOOL:
        return "boolean";
    case KT_ADDR:
    case KT_ADDR_OFF:
    case KT_BACKEND_ADDRS:
        return "address";
    case KT_ENUM:
    case KT_STR:
    case KT_CIDRS:
    case KT_CERT:
    case KT_KEY:
        return "value";
    }
    return "value";
}

/* Parse the value types that need no context beyond their field. */
static int
config_parse_simple(const struct key_def *k, const char *value, char *field, const char **err,
                    char *buf, size_t size)
{
    switch (k->type) {
    case KT_STR:
        if (*value == '\0') {
            *err = "empty value";
            return -1;
        }
        free(*(char **)(void *)field);
        *(char **)(void *)field = xstrdup(value);
        return 0;
    case KT_BOOL:
        return confval_bool(value, (bool *)field, err);
    case KT_RATE:
        return confval_rate(value, (struct rate *)(void *)field, err);
    case KT_ENUM:
        *err = buf;
        return config_parse_enum(k, value, (int *)(void *)field, buf, size);
    case KT_ADDR_OFF:
    case KT_ADDR:
        if (k->type == KT_ADDR_OFF && strcmp(value, "off") == 0) {
            memset(field, 0, sizeof(struct sockaddr_storage));
            *(socklen_t *)(void *)(field - k->offset + k->offset2) = 0;
            return 0;
        }
        return confval_addr(value, (struct sockaddr_storage *)(void *)field,
                            (socklen_t *)(void *)(field - k->offset + k->offset2), err);
    case KT_UINT:
    case KT_UINT_AUTO:
    case KT_DURATION:
    case KT_SIZE:
        return config_parse_number(k, value, field, err, buf, size);
    case KT_CIDRS:
    case KT_CERT:
    case KT_KEY:
    case KT_BACKEND_ADDRS:
        break;
    }
    MOAT_ASSERT(!"not a simple type");
    return -1;
}

void
config_apply(struct loader *ld, const struct key_def *k, void *base, const char *value, int line,
             bool replace)
{
    char *field = (char *)base + k->offset;
    char buf[256], shown[CONFIG_NAME_MAX + 8];
    const char *err;

    switch (k->type) {
    case KT_CERT:
        config_apply_cert(ld, base, value, line);
        return;
    case KT_KEY:
        config_apply_key(ld, base, value, line);
        return;
    case KT_BACKEND_ADDRS:
        config_words(ld, value, line, k, base, config_add_backend_addr);
        return;
    case KT_CIDRS:
        if (replace)
            cidr_list_free((struct cidr_list *)(void *)field);
        config_words(ld, value, line, k, field, config_add_cidr);
        return;
    case KT_STR:
    case KT_BOOL:
    case KT_UINT:
    case KT_UINT_AUTO:
    case KT_DURATION:
    case KT_SIZE:
    case KT_RATE:
    case KT_ENUM:
    case KT_ADDR:
    case KT_ADDR_OFF:
        break;
    }
    if (config_parse_simple(k, value, field, &err, buf, sizeof(buf)) != 0)
        config_error(ld, line, k->key, "bad %s '%s': %s", config_type_word(k->type),
                     config_show(shown, sizeof(shown), value), err);
}

void
config_apply_defaults(struct loader *ld, enum section_kind kind, void *base)
{
    size_t before = ld->nerrors;

    for (size_t i = 0; i < config_nkeys; i++) {
        if (config_keys[i].section == kind && config_keys[i].dflt != NULL)
            config_apply(ld, &config_keys[i], base, config_keys[i].dflt, 0, false);
    }
    MOAT_ASSERT(ld->nerrors == before);
}

/* --- lookups and the names of enumerated values, for every stage of loading and after --- */

struct config_backend *
config_backend_find(const struct config *c, const char *name)
{
    for (struct config_backend *b = c->backends; b != NULL; b = b->next) {
        if (strcmp(b->name, name) == 0)
            return b;
    }
    return NULL;
}

const char *
listener_proto_name(enum listener_proto p)
{
    switch (p) {
    case LPROTO_SMTP:
        return "smtp";
    case LPROTO_SUBMISSION:
        return "submission";
    case LPROTO_IMAP:
        return "imap";
    case LPROTO_POP3:
        return "pop3";
    }
    return "?";
}

const char *
listener_tls_name(enum listener_tls t)
{
    switch (t) {
    case LTLS_NONE:
        return "none";
    case LTLS_STARTTLS:
        return "starttls";
    case LTLS_IMPLICIT:
        return "implicit";
    }
    return "?";
}

const char *
backend_identity_name(enum backend_identity i)
{
    switch (i) {
    case IDENT_NONE:
        return "none";
    case IDENT_XCLIENT:
        return "xclient";
    case IDENT_PROXY_V1:
        return "proxy-v1";
    case IDENT_PROXY_V2:
        return "proxy-v2";
    case IDENT_ID:
        return "id";
    }
    return "?";
}

const char *
proxy_accept_name(enum proxy_accept p)
{
    switch (p) {
    case PROXY_ACCEPT_OFF:
        return "off";
    case PROXY_ACCEPT_V1:
        return "v1";
    case PROXY_ACCEPT_V2:
        return "v2";
    case PROXY_ACCEPT_ANY:
        return "any";
    }
    return "?";
}
