/*
 * fuzz_session.c: the real session, protocol and auth code (session.c, session_auth.c, conn.c,
 * backend.c, every protocol in protocols/, the `sasl` verifier's pool in auth.c) driven end to end
 * in-process, so that state bugs (a reply or a job arriving in the wrong state, a MOAT_ASSERT
 * reachable by a peer) are reachable by the fuzzer. Nothing is mocked but the peers: the client leg
 * is a loopback connection written by this harness, the backend an in-process Postfix/Dovecot
 * stand-in on 127.0.0.1 (session_fake_backend.c), the verifier Cyrus SASL with a sasldb made at
 * start-up. Everything runs on one libev loop owned by the harness (a worker without a thread).
 *
 * Input: byte 0 picks the setting, the rest is a script.
 *   bits 0-1  listener protocol: 0 smtp (MX), 1 submission, 2 imap, 3 pop3
 *   bit  2    verifier = sasl (else backend)
 *   bit  3    tls = starttls with a certificate (else tls = none)
 *   bit  4    pretend the client leg is TLS (session_test_assume_tls): AUTH without a handshake
 *   bit  5    the backend rejects every login
 *   bit  6    the backend refuses its greeting and closes
 *   bit  7    the backend closes every connection as soon as it accepts it
 * The script is client bytes cut into chunks by 0xFF followed by an op byte:
 *   'h' the client half-closes (later bytes are dropped), 'k' the backend closes its
 *   connections, 'e' the backend answers the next command with a temporary error, 'j' / 'J' the
 *   backend sends a line nobody asked for / 9000 bytes without a line end, 'f' a literal 0xFF
 *   byte in the chunk, anything else only ends the chunk.
 * Each chunk is written whole, then the loop runs until the session is at rest: no auth job in
 * the pool, no delayed reply, no backend connect or reply pending, no byte in flight on any
 * socket. At the end the client half-closes and the session must end by itself; then the
 * harness closes whatever is left, so each input starts from nothing (the ASan replay checks
 * that everything is freed). Timeouts are long and delays zero, so which path an input takes
 * does not depend on the machine's load.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sasl/sasl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "authguard.h"
#include "config.h"
#include "log.h"
#include "protocols.h"
#include "session.h"
#include "session_fake_backend.h"
#include "tls.h"
#include "worker.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* The test switches (session.h, auth.h): defined here only, never in moat. SCRAM with one
 * iteration: 4096 HMACs under ASan made a SCRAM input cost ~100 ms, and the equal-timing wait
 * for unknown users (auth.c) as long again. */
bool session_test_assume_tls;
const char *const auth_test_scram_iterations = "1";

/* A throw-away self-signed TEST certificate (ECDSA P-256, CN=fuzz.moat.test): never a real key. */
static const char test_key[] = "-----BEGIN EC PRIVATE KEY-----\n"
                               "MHcCAQEEIPPtX2ontv9bEV2jezlsyJIS8jkeEpHdclSy7ESG5KZuoAoGCCqGSM49\n"
                               "AwEHoUQDQgAEvqx4lR234yPpRAM7yb2UR3B18z64W0lqmQpXlH81HO0SmfbX/g9y\n"
                               "rEwpsi9C6Ww9yAQfQnTgSHKR7DC9DjpEjQ==\n"
                               "-----END EC PRIVATE KEY-----\n";
static const char test_cert[] = "-----BEGIN CERTIFICATE-----\n"
                                "MIIBiDCCAS+gAwIBAgIUT/mAmgw777xmR6aRKR9zJDk2fQAwCgYIKoZIzj0EAwIw\n"
                                "GTEXMBUGA1UEAwwOZnV6ei5tb2F0LnRlc3QwIBcNMjYxMjAzMTAxMTI5WhgPMjEy\n"
                                "NjExMDkxMDExMjlaMBkxFzAVBgNVBAMMDmZ1enoubW9hdC50ZXN0MFkwEwYHKoZI\n"
                                "zj0CAQYIKoZIzj0DAQcDQgAEvqx4lR234yPpRAM7yb2UR3B18z64W0lqmQpXlH81\n"
                                "HO0SmfbX/g9yrEwpsi9C6Ww9yAQfQnTgSHKR7DC9DjpEjaNTMFEwHQYDVR0OBBYE\n"
                                "FDxScrSKk2QU+X5zfa690P/dx9JVMB8GA1UdIwQYMBaAFDxScrSKk2QU+X5zfa69\n"
                                "0P/dx9JVMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgdUxpHp77\n"
                                "PqMFBHCHZsm+tYnD3ttw3IkOqcqLJbbIkXECICIC/mxpqvnHb9GaewegkaZK0Mhw\n"
                                "1OeQ0uFcWL5ABn4j\n"
                                "-----END CERTIFICATE-----\n";

/* Users in the sasldb (realm fuzz.test): alice / secret, bob / hunter2. */
static const char *const users[][2] = {{"alice", "secret"}, {"bob", "hunter2"}};

#define STEP_ITERATIONS 4000 /* loop turns to reach rest after one chunk */
#define STEP_WALL_S 1.0      /* and wall time: a bound for a stuck pool, never a path choice */
#define END_WALL_S 1.0       /* after the half-close, to end by itself */
#define TEARDOWN_WALL_S 10.0 /* after the harness closed everything (then it is a bug) */
#define INPUT_WALL_S 3.0     /* a whole input: the rest of a slower one is dropped */

static struct {
    bool ready;
    char dir[64];
    struct ev_loop *loop;
    struct worker *worker;
    struct authguard *guard;
    struct config *conf;
    struct tls_ctx *tls;
    const struct config_listener *listeners[32]; /* by setting bits 0-3 */
    int client;                                  /* the harness's end of the client leg */
    bool trace;                                  /* MOAT_FUZZ_TRACE: replies to stderr */
    double input_end;                            /* wall clock: INPUT_WALL_S after the start */
} h = {.client = -1};

static void
die(const char *what)
{
    fprintf(stderr, "fuzz_session: %s (%s)\n", what, strerror(errno));
    abort();
}

static void
write_file(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", h.dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        die("cannot write a temporary file");
}

static const char *const temp_files[] = {"cert.pem", "key.pem", "master", "sasldb2", "moat.conf"};

static void
remove_dir(const char *dir)
{
    char path[320];
    for (size_t i = 0; i < sizeof(temp_files) / sizeof(temp_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, temp_files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* An input that crashed (or a killed fuzzer) leaves its directory: remove those of processes
 * that are gone. The directory is /tmp/moat-fuzz-session.PID.XXXXXX. */
static void
remove_stale_dirs(void)
{
    DIR *d = opendir("/tmp");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid;
        char rest[16];
        if (sscanf(e->d_name, "moat-fuzz-session.%ld.%15s", &pid, rest) != 2 || pid <= 0 ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char dir[300];
        snprintf(dir, sizeof(dir), "/tmp/%s", e->d_name);
        remove_dir(dir);
    }
    closedir(d);
}

static const char *const proto_names[] = {"smtp", "submission", "imap", "pop3"};

/* Sixteen listeners: protocol x verifier x tls. Never bound: sessions are handed in directly. */
static void
write_config(unsigned port)
{
    char conf[16384];
    int n = snprintf(conf, sizeof(conf),
                     "[moat]\nhostname = mx.fuzz.test\nlog_level = debug\n"
                     "[tls]\ncertificate = %s/cert.pem\nkey = %s/key.pem\n"
                     "[timeouts]\nhandshake = 1h\npreauth_idle = 1h\npreauth_total = 1h\n"
                     "command = 1h\ndata = 1h\nbackend_reply = 1h\nbackend_connect = 1h\n"
                     "[auth]\nsasldb_path = %s/sasldb2\nrealm = fuzz.test\n"
                     "mech_list = PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256\n"
                     "failure_delay = 0\nfailure_delay_max = 0\nverify_timeout = 1h\n"
                     "[backend pf]\naddress = 127.0.0.1:%u\nidentity = xclient\n"
                     "[backend dv_imap]\naddress = 127.0.0.1:%u\nidentity = id\n"
                     "master_user = moat\nmaster_password_file = %s/master\n"
                     "[backend dv_pop3]\naddress = 127.0.0.1:%u\nidentity = xclient\n"
                     "master_user = moat\nmaster_password_file = %s/master\n",
                     h.dir, h.dir, h.dir, port, port, h.dir, port, h.dir);
    static const char *const backends[] = {"pf", "pf", "dv_imap", "dv_pop3"};
    for (unsigned i = 0; i < 16 && n > 0 && (size_t)n < sizeof(conf); i++) {
        unsigned p = i & 3;
        n += snprintf(conf + n, sizeof(conf) - (size_t)n,
                      "[listener l%u]\nprotocol = %s\nlisten = 127.0.0.1:%u\nbackend = %s\n"
                      "tls = %s\nverifier = %s\ndns_checks = off\n%s",
                      i, proto_names[p], 20000 + i, backends[p], (i & 8) ? "starttls" : "none",
                      (i & 4) ? "sasl" : "backend",
                      p == 0 ? "local_domains = fuzz.test, example.com\n" : "");
    }
    if (n <= 0 || (size_t)n >= sizeof(conf))
        die("configuration too long");
    write_file("moat.conf", conf);
}

/* The sasldb, through libsasl2 itself (auth_init() ran: the global options name the file). */
static void
make_sasldb(void)
{
    sasl_conn_t *conn = NULL;
    if (sasl_server_new("smtp", "mx.fuzz.test", "fuzz.test", NULL, NULL, NULL, 0, &conn) != SASL_OK)
        die("sasl_server_new");
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        int r = sasl_setpass(conn, users[i][0], users[i][1], (unsigned)strlen(users[i][1]), NULL, 0,
                             SASL_SET_CREATE);
        if (r != SASL_OK) {
            fprintf(stderr, "sasl_setpass: %s\n", sasl_errdetail(conn));
            die("cannot create the sasldb");
        }
    }
    sasl_dispose(&conn);
}

static void
harness_stop(void)
{
    if (!h.ready)
        return;
    auth_stop(); /* no job comes back after this */
    for (int i = 0; i < 100 && !worker_local_idle(h.worker); i++)
        ev_run(h.loop, EVRUN_NOWAIT);
    fake_backend_stop();
    worker_local_free(h.worker);
    authguard_free(h.guard);
    tls_ctx_unref(h.tls);
    config_unref(h.conf);
    ev_loop_destroy(h.loop);
    tls_library_cleanup();
    remove_dir(h.dir);
    h.ready = false;
}

static void
harness_start(void)
{
    signal(SIGPIPE, SIG_IGN);
    remove_stale_dirs();
    snprintf(h.dir, sizeof(h.dir), "/tmp/moat-fuzz-session.%ld.XXXXXX", (long)getpid());
    if (mkdtemp(h.dir) == NULL)
        die("mkdtemp");
    write_file("cert.pem", test_cert);
    write_file("key.pem", test_key);
    write_file("master", "masterpass\n");
    h.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
    if (h.loop == NULL)
        die("ev_loop_new");
    unsigned port = fake_backend_start(h.loop);
    if (port == 0)
        die("cannot listen on 127.0.0.1");
    write_config(port);
    tls_library_init();
    char path[128];
    snprintf(path, sizeof(path), "%s/moat.conf", h.dir);
    struct config_errors errs = {0};
    h.conf = config_load(path, &errs);
    for (size_t i = 0; h.conf == NULL && i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    config_errors_free(&errs);
    if (h.conf == NULL)
        die("the configuration does not load");
    protocols_bind(h.conf);
    h.trace = getenv("MOAT_FUZZ_TRACE") != NULL;
    const char *log_to = getenv("MOAT_FUZZ_LOG"); /* unset: /dev/null (the code still runs) */
    if (log_init(0, LOG_DEBUG, log_to != NULL ? log_to : "/dev/null") != 0)
        die("log_init");
    const char *err = NULL;
    int cert_index = -1;
    h.tls = tls_ctx_new(&h.conf->tls, &err, &cert_index);
    if (h.tls == NULL)
        die(err != NULL ? err : "tls_ctx_new");
    if (auth_init(h.conf, &err) != 0)
        die(err != NULL ? err : "auth_init");
    make_sasldb();
    for (const struct config_listener *l = h.conf->listeners; l != NULL; l = l->next) {
        unsigned i;
        if (sscanf(l->name, "l%u", &i) == 1 && i < 16)
            h.listeners[i] = l;
    }
    for (unsigned i = 0; i < 16; i++) {
        if (h.listeners[i] == NULL)
            die("a listener is missing");
    }
    /* no admission table (nothing is accepted here): no client rates or client bans */
    h.guard = authguard_new(NULL, 8192, 16384);
    h.worker = worker_local_new(h.loop, h.guard);
    h.ready = true;
    atexit(harness_stop);
}

static double
wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Read and drop whatever moat sent the client. */
static void
client_drain(void)
{
    static char buf[16384]; /* not on the stack: ASan would poison and unpoison it each call */
    while (h.client >= 0) {
        ssize_t n = recv(h.client, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            return;
        if (h.trace)
            fwrite(buf, 1, (size_t)n, stderr);
    }
}

static bool
fd_has_input(int fd)
{
    char b;
    return fd >= 0 && recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK) > 0;
}

/* Bytes wait on a leg that is reading: the next turn of the loop takes them. */
static bool
conn_will_read(const struct conn *c)
{
    return c->state != CONN_CLOSED && !c->read_paused && !c->eof && c->fd >= 0 &&
           fd_has_input(c->fd);
}

/* The session is waiting for its client and for nothing else. */
static bool
at_rest(void)
{
    struct session *s = worker_local_sessions(h.worker);
    if (s == NULL)
        return worker_local_idle(h.worker);
    if (s->closing || s->kicked || s->auth_deadline != 0 || s->hold_until != 0 ||
        s->connect_deadline != 0 || s->backend_wait_since != 0)
        return false;
    if (conn_out_pending(&s->client) > 0 || conn_out_pending(&s->backend) > 0)
        return false;
    if (conn_will_read(&s->client) || conn_will_read(&s->backend))
        return false;
    return fake_backend_quiet();
}

/* Run the loop until the session is at rest (twice in a row: an idle watcher may have run a
 * kicked session in between), or the bounds are reached. */
static void
run_until_rest(double wall_s)
{
    double end = wall_now() + wall_s;
    if (end > h.input_end)
        end = h.input_end;
    int rest = 0;
    /* the wall clock is read every 8th turn: the bound is coarse, the turns are many */
    for (int i = 0; i < STEP_ITERATIONS && ((i & 7) != 0 || wall_now() < end); i++) {
        ev_run(h.loop, EVRUN_NOWAIT);
        client_drain();
        if (!at_rest()) {
            rest = 0;
            /* waiting on another thread (the auth pool) or a timer: block briefly */
            struct session *s = worker_local_sessions(h.worker);
            if (s != NULL && (s->auth_deadline != 0 || s->hold_until != 0))
                ev_run(h.loop, EVRUN_ONCE);
            continue;
        }
        if (++rest >= 2)
            return;
    }
    if (h.trace)
        fprintf(stderr, "\n[fuzz_session: not at rest after %.2f s]\n", wall_s);
}

/* Write a whole chunk, letting moat read between partial writes. */
static void
client_write(const unsigned char *p, size_t n)
{
    for (int tries = 0; n > 0 && h.client >= 0 && tries < 64; tries++) {
        ssize_t w = send(h.client, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return;
        run_until_rest(0.05);
    }
}

static void
flush_chunk(unsigned char *chunk, size_t *len, bool half_closed)
{
    if (*len > 0 && !half_closed)
        client_write(chunk, *len);
    *len = 0;
    run_until_rest(STEP_WALL_S);
}

/* The client leg is a socketpair (no port, no TIME_WAIT); moat is told the peer is
 * 192.0.2.1:40000 and, before the client sends anything, that its own end is the listener's
 * address (libsasl2 insists on an IP address there). */
static void
start_session(const struct config_listener *l)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair");
    h.client = sv[1];
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    peer.sin_addr.s_addr = htonl(0xC0000201); /* 192.0.2.1 */
    workers_dispatch(&h.worker, 1, sv[0], (struct sockaddr *)&peer, sizeof(peer), h.conf, l,
                     l->tls != LTLS_NONE ? h.tls : NULL);
    ev_run(h.loop, EVRUN_NOWAIT); /* on_wake starts the session and queues its greeting */
    struct session *s = worker_local_sessions(h.worker);
    if (s == NULL)
        die("no session");
    memcpy(&s->local, &l->addr, l->addr_len);
    s->local_len = l->addr_len;
    const struct sockaddr_in *a = (const struct sockaddr_in *)&l->addr;
    inet_ntop(AF_INET, &a->sin_addr, s->local_addr, sizeof(s->local_addr));
    s->local_port = ntohs(a->sin_port);
    run_until_rest(STEP_WALL_S); /* on_wake starts the session; greeting */
}

/* The client half-closes: the session answers what was asked and ends by itself. Whatever is
 * still open after that (a relay whose backend keeps its side open) is closed here. */
static void
end_session(bool half_closed)
{
    if (h.client >= 0 && !half_closed)
        shutdown(h.client, SHUT_WR);
    h.input_end = wall_now() + END_WALL_S; /* the end has its own budget */
    double end = h.input_end;
    while (wall_now() < end && worker_local_sessions(h.worker) != NULL) {
        run_until_rest(0.05);
        if (at_rest())
            break;
    }
    struct session *s = worker_local_sessions(h.worker);
    if (s != NULL && !s->closing)
        session_close(s, REASON_SHUTDOWN);
    close(h.client);
    h.client = -1;
    fake_backend_close_all(true);
    end = wall_now() + TEARDOWN_WALL_S;
    while (wall_now() < end && !worker_local_idle(h.worker)) {
        ev_run(h.loop, EVRUN_NOWAIT);
        if (!worker_local_idle(h.worker))
            ev_run(h.loop, EVRUN_ONCE);
    }
    if (!worker_local_idle(h.worker))
        die("the session did not end");
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0 || size > 64 * 1024)
        return 0;
    if (!h.ready)
        harness_start();
    unsigned setting = data[0];
    const struct config_listener *l = h.listeners[setting & 15];
    static const enum fake_proto fake_of[] = {FAKE_SMTP, FAKE_SMTP, FAKE_IMAP, FAKE_POP3};
    struct fake_behaviour b = {.proto = fake_of[setting & 3],
                               .reject_login = (setting & 0x20) != 0,
                               .refuse_greeting = (setting & 0x40) != 0,
                               .close_on_accept = (setting & 0x80) != 0};
    fake_backend_set(&b);
    session_test_assume_tls = (setting & 0x10) != 0;
    h.input_end = wall_now() + INPUT_WALL_S;
    start_session(l);

    unsigned char *chunk = malloc(size);
    if (chunk == NULL)
        die("malloc");
    size_t len = 0;
    bool half_closed = false;
    for (size_t i = 1; i < size && wall_now() < h.input_end; i++) {
        if (data[i] != 0xFF) {
            chunk[len++] = data[i];
            continue;
        }
        unsigned char op = i + 1 < size ? data[++i] : 0;
        if (op == 'f') {
            chunk[len++] = 0xFF;
            continue;
        }
        flush_chunk(chunk, &len, half_closed);
        if (op == 'h' && !half_closed && h.client >= 0) {
            shutdown(h.client, SHUT_WR);
            half_closed = true;
            run_until_rest(STEP_WALL_S);
        } else if (op == 'k') {
            fake_backend_close_all(false);
            run_until_rest(STEP_WALL_S);
        } else if (op == 'e') {
            fake_backend_fail_next();
        } else if (op == 'j' || op == 'J') {
            fake_backend_inject(op == 'J');
            run_until_rest(STEP_WALL_S);
        }
    }
    flush_chunk(chunk, &len, half_closed);
    free(chunk);
    end_session(half_closed);
    session_test_assume_tls = false;
    return 0;
}
