/*
 * test_config.c: unit tests for config_load: every default, listener overrides whichever order
 * the sections come in, dependent defaults (auth, identity, helo_name), each error with its exact
 * "FILE:LINE: key: what" text, many errors in one load, and conf/moat.conf itself (with its
 * certificate paths pointed at temporary files, and with every "#key = default" line uncommented).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_impl.h"
#include "test.h"

static char tmpdir[] = "/tmp/moat-test-config-XXXXXX";
static char cert_path[128], key_path[128], list_path[128], badlist_path[128];

static void
write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(content, f);
        fclose(f);
    }
}

static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 1 << 20);
    if (f != NULL) {
        size_t n = fread(text, 1, (1 << 20) - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    CHECK(f != NULL);
    return text;
}

/* Replace every occurrence of from in text (which it frees) by to. */
static char *
replace_all(char *text, const char *from, const char *to)
{
    size_t n = 0, fl = strlen(from), tl = strlen(to);
    for (const char *p = strstr(text, from); p != NULL; p = strstr(p + fl, from))
        n++;
    char *out = calloc(1, strlen(text) + n * tl + 1), *w = out;
    const char *r = text;
    for (const char *p = strstr(r, from); p != NULL; p = strstr(r, from)) {
        memcpy(w, r, (size_t)(p - r));
        w += p - r;
        memcpy(w, to, tl);
        w += tl;
        r = p + fl;
    }
    strcpy(w, r);
    free(text);
    return out;
}

static void
setup_files(void)
{
    CHECK(mkdtemp(tmpdir) != NULL);
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
    snprintf(list_path, sizeof(list_path), "%s/list.txt", tmpdir);
    snprintf(badlist_path, sizeof(badlist_path), "%s/bad.txt", tmpdir);
    write_file(cert_path, "-----BEGIN CERTIFICATE-----\n");
    write_file(key_path, "-----BEGIN PRIVATE KEY-----\n");
    write_file(list_path, "# list\n203.0.113.0/24\n2001:db8:5::/48\n");
    write_file(badlist_path, "203.0.113.0/24\n\n203.0.113.1/24\n");
}

static void
cleanup_files(void)
{
    unlink(cert_path);
    unlink(key_path);
    unlink(list_path);
    unlink(badlist_path);
    rmdir(tmpdir);
}

/* Expand @CERT@, @KEY@, @LIST@, @BADLIST@ in a test text. */
static char *
expand(const char *text)
{
    char *t = strdup(text);
    t = replace_all(t, "@CERT@", cert_path);
    t = replace_all(t, "@KEY@", key_path);
    t = replace_all(t, "@LIST@", list_path);
    return replace_all(t, "@BADLIST@", badlist_path);
}

static struct config *
load_ok(const char *text)
{
    struct config_errors errs;
    char *t = expand(text);
    struct config *c = config_load_string("t.conf", t, &errs);

    free(t);
    CHECK(c != NULL);
    CHECK(errs.n == 0);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  unexpected: %s\n", errs.lines[i]);
    config_errors_free(&errs);
    return c;
}

/* Load text, which must fail with exactly the errors given (NULL-terminated), in this order. */
static void
load_fails(int test_line, const char *text, ...)
{
    struct config_errors errs;
    char *t = expand(text);
    struct config *c = config_load_string("t.conf", t, &errs);
    va_list ap;
    size_t i = 0;
    const char *want;

    free(t);
    CHECK(c == NULL);
    config_unref(c);
    va_start(ap, text);
    while ((want = va_arg(ap, const char *)) != NULL) {
        char *w = expand(want);
        if (i < errs.n) {
            CHECK_STR(errs.lines[i], w);
        } else {
            CHECK(!"missing error");
            fprintf(stderr, "  test at line %d: missing: %s\n", test_line, w);
        }
        free(w);
        i++;
    }
    va_end(ap);
    CHECK(i == errs.n);
    for (; i < errs.n; i++)
        fprintf(stderr, "  test at line %d: unexpected: %s\n", test_line, errs.lines[i]);
    config_errors_free(&errs);
}

#define MINIMAL                                                                                    \
    "[backend b]\n"                                                                                \
    "address = 127.0.0.1:10025\n"                                                                  \
    "[listener mx]\n"                                                                              \
    "protocol = smtp\n"                                                                            \
    "listen = 127.0.0.1:2525\n"                                                                    \
    "tls = none\n"                                                                                 \
    "backend = b\n"

static void
check_default_sections(const struct config *c)
{
    CHECK(c->limits.max_sessions_per_ip == 20);
    CHECK(c->limits.connection_rate_per_ip.count == 60);
    CHECK(c->limits.connection_rate_per_ip.window_ms == 60000);
    CHECK(c->limits.client_buffer_bytes == 32768);
    CHECK(c->limits.backend_buffer_bytes == 32768);
    CHECK(c->limits.message_size_bytes == 10240000);
    CHECK(c->limits.max_recipients == 100);
    CHECK(c->limits.max_errors == 10);
    CHECK(c->limits.max_preauth_commands == 50);
    CHECK(c->limits.messages_per_client.count == 500);
    CHECK(c->limits.messages_per_client.window_ms == 3600000);
    CHECK(c->limits.recipients_per_client.count == 2000);
    CHECK(c->limits.recipients_per_client.window_ms == 3600000);
    CHECK(c->timeouts.handshake_ms == 10000);
    CHECK(c->timeouts.preauth_idle_ms == 60000);
    CHECK(c->timeouts.preauth_total_ms == 300000);
    CHECK(c->timeouts.command_ms == 300000);
    CHECK(c->timeouts.data_ms == 180000);
    CHECK(c->timeouts.backend_reply_ms == 600000);
    CHECK(c->timeouts.relay_idle_ms == 0);
    CHECK(c->timeouts.backend_connect_ms == 5000);
    CHECK(c->auth.verifier == VERIFIER_BACKEND);
    CHECK(c->auth.max_failures == 3);
    CHECK(c->auth.failure_delay_ms == 1000);
    CHECK(c->auth.failure_delay_max_ms == 15000);
    CHECK(c->auth.ban_ip.count == 10 && c->auth.ban_ip.window_ms == 600000);
    CHECK(c->auth.ban_user.count == 10 && c->auth.ban_user.window_ms == 600000);
    CHECK(c->auth.ban_time_ms == 600000);
    CHECK(c->auth.sasldb_path == NULL && c->auth.saslauthd_path == NULL);
    CHECK_STR(c->auth.mech_list, "PLAIN LOGIN");
    CHECK(c->access.allow.n == 0 && c->access.deny.n == 0);
    CHECK(c->access.mode == MODE_ENFORCE);
    CHECK(c->limits.ipv6_prefix == 64 && c->limits.mode == MODE_ENFORCE);
    CHECK(c->max_tracked_clients == 65536);
}

static void
test_defaults(void)
{
    struct config *c = load_ok(MINIMAL);
    if (c == NULL)
        return;
    CHECK(atomic_load(&c->refs) == 1);
    CHECK_STR(c->path, "t.conf");
    CHECK(c->hostname != NULL && c->hostname[0] != '\0');
    CHECK(c->workers == 0);
    CHECK(c->user == NULL && c->group == NULL);
    CHECK(c->log_format == LOG_FORMAT_TEXT);
    CHECK(c->log_file == NULL);
    CHECK(c->log_level == 2);
    CHECK(c->metrics_addr_len == 0);
    CHECK(c->max_sessions == 10000);
    CHECK(c->max_tls_handshakes == 256);
    CHECK(c->shutdown_grace_ms == 30000);
    CHECK(c->tls.ncerts == 0);
    CHECK(c->tls.min_version == 12);
    CHECK_STR(c->tls.ciphers,
              "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384");
    CHECK_STR(c->tls.groups, "X25519:P-256:P-384");
    CHECK(c->tls.alpn_strict);
    CHECK(!c->tls.sni_strict && !c->tls.sni_required);
    CHECK(c->tls.ticket_lifetime_ms == 3600000);
    check_default_sections(c);

    struct config_backend *b = c->backends;
    CHECK(b != NULL && b->next == NULL);
    CHECK(config_backend_find(c, "b") == b && config_backend_find(c, "nope") == NULL);
    CHECK_STR(b->name, "b");
    CHECK(b->naddrs == 1 && b->addr_lens[0] == sizeof(struct sockaddr_in));
    CHECK(b->identity == IDENT_XCLIENT);
    CHECK_STR(b->helo_name, c->hostname);
    CHECK(b->line == 1);

    struct config_listener *l = c->listeners;
    CHECK(l != NULL && l->next == NULL);
    CHECK_STR(l->name, "mx");
    CHECK(l->line == 3);
    CHECK(l->proto == LPROTO_SMTP && l->tls == LTLS_NONE);
    CHECK(l->addr_len == sizeof(struct sockaddr_in));
    CHECK_STR(l->backend_name, "b");
    CHECK(l->backend == b);
    CHECK(l->local_domains == NULL && l->sender_login_map == NULL);
    CHECK(!l->auth);
    CHECK(l->sender_login_match && l->smtputf8 && l->dsn);
    CHECK(l->bare_newline == BARE_NEWLINE_NORMALIZE);
    CHECK(!l->greet_pause_set && l->greet_pause_ms == 0);
    CHECK(memcmp(&l->limits, &c->limits, sizeof(l->limits)) == 0);
    CHECK(memcmp(&l->timeouts, &c->timeouts, sizeof(l->timeouts)) == 0);
    CHECK_STR(l->auth_conf.mech_list, "PLAIN LOGIN");
    CHECK(l->auth_conf.mech_list != c->auth.mech_list);

    CHECK(config_ref(c) == c && atomic_load(&c->refs) == 2);
    config_unref(c);
    CHECK(atomic_load(&c->refs) == 1);
    config_unref(c);
    config_unref(NULL);
    config_free(NULL);
}

/* The listener gets global values plus its own, wherever its section is in the file. */
static void
check_overrides(const char *text)
{
    struct config *c = load_ok(text);
    if (c == NULL)
        return;
    struct config_listener *a = c->listeners, *b = a ? a->next : NULL;
    CHECK(a != NULL && b != NULL);
    if (a == NULL || b == NULL) {
        config_unref(c);
        return;
    }
    CHECK_STR(a->name, "a");
    CHECK(c->limits.max_errors == 5 && c->timeouts.data_ms == 60000);
    CHECK(a->limits.max_errors == 7);         /* own */
    CHECK(a->limits.max_recipients == 42);    /* global */
    CHECK(a->timeouts.data_ms == 120000);     /* own */
    CHECK(a->timeouts.command_ms == 240000);  /* global */
    CHECK(a->timeouts.handshake_ms == 10000); /* default */
    CHECK(b->limits.max_errors == 5 && b->limits.max_recipients == 42);
    CHECK(b->timeouts.data_ms == 60000 && b->timeouts.command_ms == 240000);
    CHECK_STR(a->auth_conf.mech_list, "PLAIN");
    CHECK_STR(b->auth_conf.mech_list, "PLAIN LOGIN CRAM-MD5");
    CHECK(a->auth_conf.max_failures == 1 && b->auth_conf.max_failures == 3);
    CHECK(a->access.mode == MODE_LOG && b->access.mode == MODE_ENFORCE);
    /* a: its first allow replaced the global list, its second appended */
    CHECK(c->access.allow.n == 2 && b->access.allow.n == 2);
    CHECK(a->access.allow.n == 2);
    if (a->access.allow.n == 2)
        CHECK(a->access.allow.items[0].addr[0] == 198 && a->access.allow.items[1].addr[0] == 203);
    CHECK(a->access.deny.n == 3 && b->access.deny.n == 0);
    CHECK(a->auth && b->auth); /* imap and pop3 offer AUTH by default */
    config_unref(c);
}

static void
test_overrides(void)
{
    const char *listeners = "[listener a]\n"
                            "protocol = imap\n"
                            "listen = 127.0.0.1:1143\n"
                            "tls = none\n"
                            "backend = b\n"
                            "max_errors = 7\n"
                            "data = 2m\n"
                            "mech_list = PLAIN\n"
                            "max_failures = 1\n"
                            "mode = log\n"
                            "allow = 198.51.100.0/24\n"
                            "allow = 203.0.113.0/24\n"
                            "deny = file:@LIST@ 192.0.2.0/24\n"
                            "[listener b2]\n"
                            "protocol = pop3\n"
                            "listen = 127.0.0.1:1110\n"
                            "tls = none\n"
                            "backend = b\n";
    const char *globals = "[limits]\n"
                          "max_errors = 5\n"
                          "max_recipients = 42\n"
                          "[timeouts]\n"
                          "data = 1m\n"
                          "command = 4m\n"
                          "[auth]\n"
                          "mech_list = PLAIN LOGIN CRAM-MD5\n"
                          "[access]\n"
                          "allow = 10.0.0.0/8, ::1\n"
                          "[backend b]\n"
                          "address = 127.0.0.1:10143\n";
    char text[4096];

    snprintf(text, sizeof(text), "%s%s", listeners, globals);
    check_overrides(text);
    snprintf(text, sizeof(text), "%s%s", globals, listeners);
    check_overrides(text);
}

static void
test_dependent_defaults(void)
{
    struct config *c = load_ok("[moat]\n"
                               "hostname = mx.example.test\n"
                               "workers = 4\n"
                               "log_file = stderr\n"
                               "metrics = 127.0.0.1:9100\n"
                               "[tls]\n"
                               "certificate = @CERT@\n"
                               "certificate = @CERT@\n"
                               "key = @KEY@\n"
                               "min_version = 1.3\n"
                               "[backend imap]\n"
                               "address = 127.0.0.1:10143 [::1]:10143\n"
                               "address = 127.0.0.2:10143\n"
                               "[backend smtp]\n"
                               "address = 127.0.0.1:10025\n"
                               "helo_name = proxy.example.test\n"
                               "[backend spare]\n"
                               "address = 127.0.0.1:10026\n"
                               "[backend pp]\n"
                               "address = 127.0.0.1:10027\n"
                               "identity = proxy-v2\n"
                               "[listener imaps]\n"
                               "protocol = imap\n"
                               "listen = [::1]:993\n"
                               "tls = implicit\n"
                               "backend = imap\n"
                               "auth = no\n"
                               "[listener sub]\n"
                               "protocol = submission\n"
                               "listen = *:587\n"
                               "backend = smtp\n"
                               "greet_pause = 0\n"
                               "[listener mx]\n"
                               "protocol = smtp\n"
                               "listen = 127.0.0.1:25\n"
                               "backend = smtp\n"
                               "[listener mx2]\n"
                               "protocol = smtp\n"
                               "listen = 127.0.0.1:26\n"
                               "backend = pp\n"
                               "auth = yes\n");
    if (c == NULL)
        return;
    CHECK_STR(c->hostname, "mx.example.test");
    CHECK(c->workers == 4 && c->log_file == NULL);
    CHECK(c->metrics_addr_len == sizeof(struct sockaddr_in));
    CHECK(c->tls.ncerts == 2 && c->tls.min_version == 13);
    CHECK_STR(c->tls.certs[0].key_file, cert_path); /* no key line: the key is in the cert file */
    CHECK_STR(c->tls.certs[1].key_file, key_path);
    CHECK(c->tls.certs[0].line == 7 && c->tls.certs[1].line == 8);
    struct config_backend *imap = config_backend_find(c, "imap");
    struct config_backend *smtp = config_backend_find(c, "smtp");
    struct config_backend *spare = config_backend_find(c, "spare");
    struct config_backend *pp = config_backend_find(c, "pp");
    CHECK(imap && smtp && spare && pp);
    if (imap && smtp && spare && pp) {
        CHECK(imap->naddrs == 3 && imap->addr_lens[1] == sizeof(struct sockaddr_in6));
        CHECK(imap->identity == IDENT_ID);
        CHECK(smtp->identity == IDENT_XCLIENT);
        CHECK(spare->identity == IDENT_NONE);
        CHECK(pp->identity == IDENT_PROXY_V2);
        CHECK_STR(imap->helo_name, "mx.example.test");
        CHECK_STR(smtp->helo_name, "proxy.example.test");
    }
    struct config_listener *l = c->listeners;
    CHECK(l && !l->auth && l->tls == LTLS_IMPLICIT); /* imaps: explicit no */
    l = l ? l->next : NULL;
    CHECK(l && l->auth && l->tls == LTLS_STARTTLS && l->greet_pause_set); /* sub */
    l = l ? l->next : NULL;
    CHECK(l && !l->auth && !l->greet_pause_set); /* mx */
    l = l ? l->next : NULL;
    CHECK(l && l->auth && l->next == NULL); /* mx2: explicit yes */
    config_unref(c);

    c = load_ok("[moat]\nlog_file = /var/log/moat.log\nmetrics = [::1]:9100\nworkers = auto\n"
                "log_level = debug\nlog_format = json\nuser = mail\n" MINIMAL);
    if (c != NULL) {
        CHECK_STR(c->log_file, "/var/log/moat.log");
        CHECK(c->metrics_addr_len == sizeof(struct sockaddr_in6));
        CHECK(c->workers == 0 && c->log_level == 3 && c->log_format == LOG_FORMAT_JSON);
        CHECK_STR(c->user, "mail");
        config_unref(c);
    }
    CHECK_STR(listener_proto_name(LPROTO_SUBMISSION), "submission");
    CHECK_STR(listener_proto_name(LPROTO_POP3), "pop3");
    CHECK_STR(listener_tls_name(LTLS_IMPLICIT), "implicit");
    CHECK_STR(backend_identity_name(IDENT_PROXY_V1), "proxy-v1");
    CHECK_STR(backend_identity_name(IDENT_ID), "id");
}

/* Each bad value: its exact message at its line. MINIMAL adds lines 2..8. */
static void
test_value_errors(void)
{
    load_fails(__LINE__, "[timeouts]\nhandshake = 5x\n" MINIMAL,
               "t.conf:2: handshake: bad duration '5x': unknown unit 'x'", NULL);
    load_fails(__LINE__, "[timeouts]\ndata = 30\n" MINIMAL,
               "t.conf:2: data: bad duration '30': missing unit (ms, s, m, h, d)", NULL);
    load_fails(__LINE__, "[timeouts]\ncommand = 0\n" MINIMAL,
               "t.conf:2: command: bad duration '0': must not be 0", NULL);
    load_fails(__LINE__, "[limits]\nconnection_rate_per_ip = 60\n" MINIMAL,
               "t.conf:2: connection_rate_per_ip: bad rate '60': expected COUNT/DURATION such as "
               "100/1m, or 0 for unlimited",
               NULL);
    load_fails(__LINE__, "[limits]\nclient_buffer = 32q\n" MINIMAL,
               "t.conf:2: client_buffer: bad size '32q': unknown unit 'q'", NULL);
    load_fails(__LINE__, "[limits]\nclient_buffer = 1k\n" MINIMAL,
               "t.conf:2: client_buffer: bad size '1k': must be from 4096 to 16777216 bytes", NULL);
    load_fails(__LINE__, "[limits]\nmax_recipients = lots\n" MINIMAL,
               "t.conf:2: max_recipients: bad number 'lots': not a number", NULL);
    load_fails(__LINE__, "[limits]\nmax_errors = 0\n" MINIMAL,
               "t.conf:2: max_errors: bad number '0': must be at least 1", NULL);
    load_fails(__LINE__, "[moat]\nworkers = 5000\n" MINIMAL,
               "t.conf:2: workers: bad number '5000': must be at most 1024", NULL);
    load_fails(__LINE__, "[tls]\nalpn_strict = maybe\n" MINIMAL,
               "t.conf:2: alpn_strict: bad boolean 'maybe': expected yes or no", NULL);
    load_fails(__LINE__, "[moat]\nlog_level = loud\n" MINIMAL,
               "t.conf:2: log_level: bad value 'loud': expected one of error, warn, info, debug",
               NULL);
    load_fails(__LINE__, "[tls]\nmin_version = 1.1\n" MINIMAL,
               "t.conf:2: min_version: bad value '1.1': expected one of 1.2, 1.3", NULL);
    load_fails(__LINE__, "[moat]\nmetrics = localhost:9100\n" MINIMAL,
               "t.conf:2: metrics: bad address 'localhost:9100': not a numeric address", NULL);
    load_fails(__LINE__, "[moat]\nhostname =\n" MINIMAL,
               "t.conf:2: hostname: bad value '': empty value", NULL);
    /* the hostname goes into greetings and refusals: a DNS name, checked at load */
    load_fails(__LINE__, "[moat]\nhostname = mx..example\n" MINIMAL,
               "t.conf:2: hostname: not a host name: empty label", NULL);
    load_fails(__LINE__, "[moat]\nhostname = mx_1.example\n" MINIMAL,
               "t.conf:2: hostname: not a host name: only letters, digits, '-' and '.' are allowed",
               NULL);
    load_fails(__LINE__, "[moat]\nhostname = -mx.example\n" MINIMAL,
               "t.conf:2: hostname: not a host name: a label starts with '-'", NULL);
    load_fails(__LINE__,
               "[moat]\nhostname = "
               "a234567890123456789012345678901234567890123456789012345678901234.example\n" MINIMAL,
               "t.conf:2: hostname: not a host name: a label is longer than 63 characters", NULL);
    /* ticket_lifetime: 0 (off) or whole seconds up to the ticket keys' hour */
    load_fails(__LINE__, "[tls]\nticket_lifetime = 2h\n" MINIMAL,
               "t.conf:2: ticket_lifetime: must be 0 (off) or whole seconds from 1s to 1h", NULL);
    load_fails(__LINE__, "[tls]\nticket_lifetime = 1500ms\n" MINIMAL,
               "t.conf:2: ticket_lifetime: must be 0 (off) or whole seconds from 1s to 1h", NULL);
    load_fails(__LINE__, "[access]\nallow = 10.0.0.0/8 10.0.0.1/8, bogus\n" MINIMAL,
               "t.conf:2: allow: bad CIDR '10.0.0.1/8': address has bits set beyond the /8 prefix",
               "t.conf:2: allow: bad CIDR 'bogus': not a numeric address", NULL);
    load_fails(__LINE__, "[access]\ndeny = file:@BADLIST@\nallow = file:/nonexistent/x\n" MINIMAL,
               "t.conf:2: deny: '@BADLIST@' line 3: address has bits set beyond the /24 prefix",
               "t.conf:3: allow: cannot read '/nonexistent/x': No such file or directory", NULL);
    load_fails(__LINE__,
               "[backend b]\naddress = 127.0.0.1:10025 mail:25 [::1]:0\n"
               "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:2525\ntls = none\nbackend = b\n",
               "t.conf:2: address: bad address 'mail:25': not a numeric address",
               "t.conf:2: address: bad address '[::1]:0': port must be a number from 1 to 65535",
               NULL);
    load_fails(__LINE__,
               "[backend b]\naddress = 127.0.0.1:1 127.0.0.1:2 127.0.0.1:3 127.0.0.1:4 "
               "127.0.0.1:5 127.0.0.1:6 127.0.0.1:7 127.0.0.1:8 127.0.0.1:9\n"
               "identity = smtp\n"
               "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:2525\ntls = none\nbackend = b\n",
               "t.conf:2: address: more than 8 addresses",
               "t.conf:3: identity: bad value 'smtp': expected one of xclient, proxy-v1, "
               "proxy-v2, id, none",
               NULL);
    load_fails(__LINE__,
               "[backend b]\naddress = 127.0.0.1:10025\n"
               "[listener mx]\nprotocol = lmtp\nlisten = 127.0.0.1:2525\ntls = starttlss\n"
               "backend = b\nbare_newline = keep\nhandshake = 1\n",
               "t.conf:4: protocol: bad value 'lmtp': expected one of smtp, submission, imap, "
               "pop3",
               "t.conf:6: tls: bad value 'starttlss': expected one of implicit, starttls, none",
               /* the default (starttls) stays in force, and needs a certificate */
               "t.conf:6: tls: [listener mx] uses tls = starttls but [tls] has no certificate",
               "t.conf:8: bare_newline: bad value 'keep': expected one of normalize, reject",
               "t.conf:9: handshake: bad duration '1': missing unit (ms, s, m, h, d)", NULL);
}

static void
test_structure_errors(void)
{
    load_fails(__LINE__, "[resolver]\nservers = 1.1.1.1\n[listener]\nprotocol = smtp\n" MINIMAL,
               "t.conf:1: resolver: unknown section [resolver]",
               "t.conf:3: listener: [listener NAME] needs a name of letters, digits, '.', '_' or "
               "'-' (got '')",
               NULL);
    load_fails(__LINE__, "[moat]\nthreads = 4\n[limits]\nmax_ip = 3\n" MINIMAL "colour = red\n",
               "t.conf:2: threads: unknown key in [moat]",
               "t.conf:4: max_ip: unknown key in [limits]",
               "t.conf:12: colour: unknown key in [listener mx]", NULL);
    load_fails(__LINE__, "workers = 2\n[moat x]\nworkers = 3\nworkers = 4\n" MINIMAL,
               "t.conf:1: workers: not inside a [section]", "t.conf:2: moat: [moat] takes no name",
               "t.conf:4: workers: already set at line 3", NULL);
    load_fails(__LINE__, "[bad name!]\n[listener my mx]\n[]\n" MINIMAL,
               "t.conf:1: bad: unknown section [bad]",
               "t.conf:2: listener: [listener NAME] needs a name of letters, digits, '.', '_' or "
               "'-' (got 'my mx')",
               "t.conf:3: section: unknown section []", NULL);
    load_fails(__LINE__, MINIMAL "[backend b]\naddress = 127.0.0.1:1\n[moat]\n[moat]\n",
               "t.conf:8: backend: duplicate section [backend b] (first at line 1)",
               "t.conf:11: moat: duplicate section [moat] (first at line 10)", NULL);
    load_fails(__LINE__,
               "[backend b]\naddress = 127.0.0.1:10025\n"
               "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:25\ntls = none\nbackend = b\n"
               "[listener mx]\nprotocol = smtp\n",
               "t.conf:8: listener: duplicate section [listener mx] (first at line 3)", NULL);
}

static void
test_cross_errors(void)
{
    load_fails(__LINE__, "[backend b]\naddress = 127.0.0.1:10025\n",
               "t.conf:1: listener: no "
               "[listener NAME] section",
               NULL);
    load_fails(__LINE__, "", "t.conf:1: listener: no [listener NAME] section", NULL);
    load_fails(__LINE__, "[backend b]\n[listener x]\ntls = none\n",
               "t.conf:1: backend: [backend b] has no 'address'",
               "t.conf:2: listener: [listener x] has no 'protocol'",
               "t.conf:2: listener: [listener x] has no 'listen'",
               "t.conf:2: listener: [listener x] has no 'backend'", NULL);
    load_fails(__LINE__,
               "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:25\ntls = none\nbackend = foo\n",
               "t.conf:5: backend: no [backend foo] section", NULL);
    load_fails(__LINE__,
               "[backend b]\naddress = 127.0.0.1:10025\n"
               "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:25\nbackend = b\n"
               "[listener imaps]\nprotocol = imap\nlisten = 127.0.0.1:993\ntls = implicit\n"
               "backend = b\n",
               "t.conf:3: tls: [listener mx] uses tls = starttls but [tls] has no certificate",
               "t.conf:10: tls: [listener imaps] uses tls = implicit but [tls] has no certificate",
               NULL);
    load_fails(__LINE__,
               "[backend b]\naddress = 127.0.0.1:10025\n"
               "[listener mx]\nprotocol = smtp\ntls = none\nlisten = 127.0.0.1:25\nbackend = b\n"
               "[listener mx2]\nprotocol = smtp\ntls = none\nbackend = b\nlisten = 127.0.0.1:25\n"
               "[listener v6]\nprotocol = smtp\ntls = none\nbackend = b\nlisten = [::1]:25\n"
               "[listener v6b]\nprotocol = smtp\ntls = none\nbackend = b\nlisten = [::1]:25\n"
               "[listener any]\nprotocol = smtp\ntls = none\nbackend = b\nlisten = *:25\n",
               "t.conf:12: listen: 127.0.0.1:25 already used by listener 'mx' (line 6)",
               "t.conf:22: listen: [::1]:25 already used by listener 'v6' (line 17)",
               "t.conf:27: listen: 0.0.0.0:25 overlaps 127.0.0.1:25 of listener 'mx' (line 6)",
               NULL);
    load_fails(__LINE__,
               "[tls]\ncertificate = /nonexistent/x.pem\nkey = /nonexistent/x.key\n"
               "certificate = @CERT@\nkey = @KEY@\nkey = @KEY@\ncertificate = /tmp\n" MINIMAL,
               "t.conf:2: certificate: cannot read '/nonexistent/x.pem': No such file or "
               "directory",
               "t.conf:3: key: cannot read '/nonexistent/x.key': No such file or directory",
               "t.conf:6: key: the certificate of line 4 already has a key",
               "t.conf:7: certificate: cannot read '/tmp': not a regular file", NULL);
    load_fails(__LINE__, "[tls]\nkey = @KEY@\n" MINIMAL,
               "t.conf:2: key: no certificate before this key", NULL);
    load_fails(__LINE__,
               "[tls]\ncertificate = @CERT@\ncertificate = @CERT@\ncertificate = @CERT@\n"
               "certificate = @CERT@\ncertificate = @CERT@\ncertificate = @CERT@\n"
               "certificate = @CERT@\ncertificate = @CERT@\ncertificate = @CERT@\n" MINIMAL,
               "t.conf:10: certificate: more than 8 certificates", NULL);
}

static void
test_syntax_errors(void)
{
    char text[8192];

    load_fails(__LINE__, "[moat\nno equals here\n[tls ; x]\n" MINIMAL "also bad\n",
               "t.conf:1: syntax: expected 'key = value' or '[section]'",
               "t.conf:2: syntax: expected 'key = value' or '[section]'",
               "t.conf:3: syntax: expected 'key = value' or '[section]'",
               "t.conf:11: syntax: expected 'key = value' or '[section]'", NULL);
    /* comments, blank lines, CRLF, indentation, a BOM and inline comments are fine */
    struct config *c = load_ok("\xEF\xBB\xBF# comment\r\n; another\r\n\r\n[limits]\r\n"
                               "  max_errors = 9   # nine\r\n"
                               "\tmax_recipients = 8 ; eight\r\n" MINIMAL);
    if (c != NULL) {
        CHECK(c->limits.max_errors == 9 && c->limits.max_recipients == 8);
        config_unref(c);
    }
    /* a line longer than inih's buffer is one error, not several fragments */
    memset(text, 0, sizeof(text));
    strcpy(text, "[moat]\nhostname = ");
    memset(text + strlen(text), 'h', 5000);
    strcat(text, "\n" MINIMAL);
    load_fails(__LINE__, text, "t.conf:2: syntax: line longer than 4094 characters", NULL);
    /* a long value that fits is kept whole */
    memset(text, 0, sizeof(text));
    strcpy(text, "[moat]\nlog_file = ");
    memset(text + strlen(text), 'h', 3000);
    strcat(text, "\n" MINIMAL);
    c = load_ok(text);
    if (c != NULL) {
        CHECK(strlen(c->log_file) == 3000);
        config_unref(c);
    }
    /* the errors of a broken config all come out, sorted by line */
    load_fails(__LINE__,
               "[moat]\nworkers = many\nbogus\n[timeouts]\nhandshake = 5x\nrelay_idle = -1s\n"
               "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:25\nbackend = nowhere\n"
               "max_errors = 0\n[limits]\nmax_errors = 5\n",
               "t.conf:2: workers: bad number 'many': not a number",
               "t.conf:3: syntax: expected 'key = value' or '[section]'",
               "t.conf:5: handshake: bad duration '5x': unknown unit 'x'",
               "t.conf:6: relay_idle: bad duration '-1s': expected a number with a unit (ms, s, "
               "m, h, d)",
               "t.conf:7: tls: [listener mx] uses tls = starttls but [tls] has no certificate",
               "t.conf:10: backend: no [backend nowhere] section",
               "t.conf:11: max_errors: bad number '0': must be at least 1", NULL);
}

static void
test_error_cap(void)
{
    size_t len = 300 * 12 + 64;
    char *text = calloc(1, len);
    struct config_errors errs;

    strcpy(text, "[moat]\n");
    for (int i = 0; i < 300; i++)
        strcat(text, "nokey = 1\n");
    CHECK(config_load_string("t.conf", text, &errs) == NULL);
    CHECK(errs.n == CONFIG_ERRORS_MAX + 1);
    if (errs.n == CONFIG_ERRORS_MAX + 1)
        CHECK_STR(errs.lines[CONFIG_ERRORS_MAX], "t.conf: 101 more errors not shown");
    config_errors_free(&errs);
    CHECK(config_load_string("t.conf", text, NULL) == NULL);
    free(text);
}

static void
test_load_file(void)
{
    struct config_errors errs;
    char path[160];

    CHECK(config_load("/nonexistent/moat.conf", &errs) == NULL);
    CHECK(errs.n == 1);
    if (errs.n == 1)
        CHECK_STR(errs.lines[0], "/nonexistent/moat.conf:0: config: cannot read "
                                 "'/nonexistent/moat.conf': No such file or directory");
    config_errors_free(&errs);
    CHECK(config_load("/tmp", &errs) == NULL && errs.n == 1);
    config_errors_free(&errs);

    snprintf(path, sizeof(path), "%s/t.conf", tmpdir);
    write_file(path, MINIMAL "handshake = 1x\n");
    CHECK(config_load(path, &errs) == NULL && errs.n == 1);
    if (errs.n == 1) {
        char want[300];
        snprintf(want, sizeof(want), "%s:8: handshake: bad duration '1x': unknown unit 'x'", path);
        CHECK_STR(errs.lines[0], want);
    }
    config_errors_free(&errs);
    write_file(path, MINIMAL);
    struct config *c = config_load(path, &errs);
    CHECK(c != NULL && errs.n == 0);
    if (c != NULL)
        CHECK_STR(c->path, path);
    config_errors_free(&errs);
    config_unref(c);
    unlink(path);
}

/* Point the example's certificate paths at our temporary files. */
static char *
reference_text(bool uncomment_defaults)
{
    char *text = read_file("conf/moat.conf");
    text = replace_all(text, "/etc/moat/tls/mail.example.com.crt", cert_path);
    text = replace_all(text, "/etc/moat/tls/mail.example.com.key", key_path);
    if (uncomment_defaults) {
        for (char *p = text; (p = strstr(p, "\n#")) != NULL; p++) {
            size_t n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz_0123456789");
            if (n > 0 && strncmp(p + 2 + n, " = ", 3) == 0)
                p[1] = ' ';
        }
    }
    return text;
}

/* Admission keys: the table size, the IPv6 prefix, the dry-run switches, listener overrides. */
static void
test_admission_keys(void)
{
    struct config *c = load_ok("[moat]\nmax_tracked_clients = 64\n"
                               "[limits]\nipv6_prefix = 48\nlimits_mode = log\n" MINIMAL
                               "limits_mode = enforce\nipv6_prefix = 128\ngreet_pause = 2s\n"
                               "greet_mode = log\n");
    if (c != NULL) {
        CHECK(c->max_tracked_clients == 64);
        CHECK(c->limits.ipv6_prefix == 48 && c->limits.mode == MODE_LOG);
        const struct config_listener *l = c->listeners;
        CHECK(l->limits.ipv6_prefix == 128 && l->limits.mode == MODE_ENFORCE);
        CHECK(l->greet_pause_ms == 2000 && l->greet_mode == MODE_LOG);
        config_unref(c);
    }
    c = load_ok(MINIMAL);
    if (c != NULL) {
        CHECK(c->listeners->greet_mode == MODE_ENFORCE && c->listeners->greet_pause_ms == 0);
        config_unref(c);
    }
    load_fails(__LINE__, "[limits]\nipv6_prefix = 129\n" MINIMAL,
               "t.conf:2: ipv6_prefix: bad number '129': must be at most 128", NULL);
    load_fails(__LINE__, "[limits]\nipv6_prefix = 0\n" MINIMAL,
               "t.conf:2: ipv6_prefix: bad number '0': must be at least 1", NULL);
    load_fails(__LINE__, "[moat]\nmax_tracked_clients = 8\n" MINIMAL,
               "t.conf:2: max_tracked_clients: bad number '8': must be at least 16", NULL);
    load_fails(__LINE__, "[limits]\nlimits_mode = maybe\n" MINIMAL,
               "t.conf:2: limits_mode: bad value 'maybe': expected one of enforce, log", NULL);
}

static void
test_reference_config(void)
{
    struct config_errors errs;
    struct config *c, *d;
    char *text, *text2;

    /* As shipped: only the certificate files may be missing. */
    c = config_load("conf/moat.conf", &errs);
    CHECK(errs.n == 2 || c != NULL);
    for (size_t i = 0; i < errs.n; i++)
        CHECK(strstr(errs.lines[i], "cannot read '/etc/moat/tls/") != NULL);
    config_errors_free(&errs);
    config_unref(c);

    text = reference_text(false);
    c = config_load_string("moat.conf", text, &errs);
    CHECK(c != NULL && errs.n == 0);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  moat.conf: %s\n", errs.lines[i]);
    config_errors_free(&errs);
    text2 = reference_text(true);
    CHECK(strcmp(text, text2) != 0);
    d = config_load_string("moat.conf", text2, &errs);
    CHECK(d != NULL && errs.n == 0);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  moat.conf uncommented: %s\n", errs.lines[i]);
    config_errors_free(&errs);
    if (c != NULL && d != NULL) {
        size_t n = 0;
        for (struct config_listener *l = c->listeners; l != NULL; l = l->next)
            n++;
        CHECK(n == 7);
        /* the uncommented defaults are the built-in defaults */
        check_default_sections(c);
        check_default_sections(d);
        CHECK(d->workers == c->workers && d->log_level == c->log_level);
        CHECK(d->metrics_addr_len == 0 && d->max_sessions == 10000);
        CHECK(d->max_tls_handshakes == 256 && d->shutdown_grace_ms == 30000);
        CHECK_STR(d->tls.ciphers, c->tls.ciphers);
        CHECK_STR(d->tls.groups, c->tls.groups);
        CHECK(d->tls.min_version == 12 && d->tls.alpn_strict);
        CHECK(d->tls.ticket_lifetime_ms == 3600000);
        struct config_listener *mx = c->listeners;
        CHECK(mx->greet_pause_ms == 3000 && mx->limits.max_preauth_commands == 20);
        CHECK(config_backend_find(c, "dovecot-pop3")->identity == IDENT_XCLIENT);
        CHECK(config_backend_find(c, "postfix-submission")->naddrs == 2);
    }
    /* every key the loader knows is documented */
    for (size_t i = 0; i < config_nkeys; i++) {
        char want[80];
        snprintf(want, sizeof(want), " %s ", config_keys[i].key);
        char alt[80];
        snprintf(alt, sizeof(alt), "\n%s = ", config_keys[i].key);
        bool found = strstr(text2, want) != NULL || strstr(text2, alt) != NULL;
        if (!found)
            fprintf(stderr, "  moat.conf does not document '%s'\n", config_keys[i].key);
        CHECK(found);
    }
    config_unref(c);
    config_unref(d);
    free(text);
    free(text2);
}

int
main(void)
{
    setup_files();
    test_defaults();
    test_overrides();
    test_dependent_defaults();
    test_value_errors();
    test_structure_errors();
    test_cross_errors();
    test_syntax_errors();
    test_error_cap();
    test_load_file();
    test_reference_config();
    test_admission_keys();
    cleanup_files();
    return test_finish("test_config");
}
