/*
 * moat_loadgen: a small load generator for moat's benchmarks (tests/bench/README.md).
 *
 * One thread, non-blocking sockets on epoll, OpenSSL as the TLS client (the client side should
 * cost less than the server it measures). Every run is bounded in count and in time (-T).
 * Clients bind to 127.0.0.LO..HI in turn (-s), never 127.0.0.1 (moat's own trusted address).
 * This file: options, event loop, sockets, TLS, latency statistics. The protocol dialogues are
 * in loadgen_modes.c.
 *
 * Modes:
 *   handshake   open connections (-c at once) for -d seconds; each does a full TLS handshake
 *               (-t; with -R a resumed one, from the latest ticket), reads the greeting line
 *               and closes. Without -t: connect-to-greeting latency.
 *   hold        open -n sessions (-c connecting at once) and keep them: read the greeting, and
 *               with -u/-w log in to IMAP (LOGIN), or with -e send SMTP EHLO. Prints
 *               "ready ok=N fail=F" when all are up, then waits for EOF on stdin (or -T).
 *   smtp-send   -n messages over connections of -m messages each (-c at once): EHLO, then
 *               MAIL/RCPT/DATA pipelined, the body, the final dot and the next transaction's
 *               MAIL/RCPT/DATA in one write. Reports messages per second.
 *   imap-fetch  one session: log in (-u/-w), SELECT INBOX, then -n times FETCH 1 BODY.PEEK[].
 *               Reports the literal bytes received per second; latency = one FETCH.
 *   imap-login  -n sessions (-c at once): greeting, LOGIN (-u/-w), NOOP, LOGOUT; latency =
 *               connect to the NOOP's OK.
 *   smtp-submit -n sessions (-c at once), one message each: EHLO, AUTH PLAIN (-u/-w), MAIL
 *               FROM:<user>, RCPT, DATA, a body of -b bytes, QUIT; latency = connect to the 250
 *               after the final dot.
 *   starttls    -n sessions (-c at once): EHLO, STARTTLS, the handshake, EHLO; latency =
 *               connect to the second EHLO's 250.
 *
 * Output: one line of key=value on stdout (hold: the "ready" line first), with latency
 * percentiles lat_p50_ms, lat_p90_ms, lat_p99_ms of the mode's operation. Errors: stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"

struct options opt = {
    .host = "127.0.0.1",
    .conc = 16,
    .total = 100,
    .duration = 10,
    .timeout = 120,
    .src_lo = 2,
    .src_hi = 250,
    .per_conn = 50,
    .rcpt = "alice@example.test",
    .body_bytes = 10 * 1024,
};

struct stats st;

#define MAX_SAMPLES (1 << 22)
static double *samples;
static size_t nsamples, samples_cap;
static SSL_SESSION *resume_session; /* -R: the latest resumable session */

static int ep;
static SSL_CTX *ctx;
static int src_next;
static struct conn *dead;
static int errors_shown;

double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

void
warnx(const char *fmt, ...)
{
    va_list ap;
    if (errors_shown++ >= 10)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void
set_events(struct conn *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

void
finish(struct conn *c, int ok)
{
    if (c->st == C_DEAD)
        return;
    if (ok)
        st.ok++;
    else
        st.fail++;
    st.active--;
    if (c->ssl) {
        /* A close_notify: without it OpenSSL marks the session not resumable (-R). */
        if (ok)
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    c->ssl = NULL;
    close(c->fd);
    c->st = C_DEAD;
    c->next_dead = dead;
    dead = c;
}

static int
flush_out(struct conn *c)
{
    while (c->outoff < c->outlen) {
        int n;
        if (c->ssl) {
            n = SSL_write(c->ssl, c->out + c->outoff, (int)(c->outlen - c->outoff));
            if (n <= 0) {
                int e = SSL_get_error(c->ssl, n);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    set_events(c, EPOLLIN | EPOLLOUT);
                    return 0;
                }
                warnx("tls write failed");
                finish(c, 0);
                return -1;
            }
        } else {
            n = (int)write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
            if (n < 0) {
                if (errno == EAGAIN) {
                    set_events(c, EPOLLIN | EPOLLOUT);
                    return 0;
                }
                warnx("write: %s", strerror(errno));
                finish(c, 0);
                return -1;
            }
        }
        c->outoff += (size_t)n;
    }
    c->outoff = c->outlen = 0;
    set_events(c, EPOLLIN);
    return 0;
}

int
sendf(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->out + c->outlen, OUTBUF - c->outlen, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= OUTBUF - c->outlen) {
        warnx("output buffer full");
        finish(c, 0);
        return -1;
    }
    c->outlen += (size_t)n;
    return flush_out(c);
}

int
send_bytes(struct conn *c, const char *p, size_t n)
{
    if (n > OUTBUF - c->outlen) {
        warnx("output buffer full");
        finish(c, 0);
        return -1;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
    return flush_out(c);
}

void
sample(double secs)
{
    if (secs > st.lat_max)
        st.lat_max = secs;
    if (nsamples == samples_cap) {
        if (samples_cap >= MAX_SAMPLES)
            return;
        size_t cap = samples_cap ? 2 * samples_cap : 4096;
        double *grown = realloc(samples, cap * sizeof *samples);
        if (!grown)
            return;
        samples = grown;
        samples_cap = cap;
    }
    samples[nsamples++] = secs;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* " lat_n=N lat_p50_ms=... lat_p90_ms=... lat_p99_ms=... lat_max_ms=..." (nearest rank). */
static void
print_latency(void)
{
    qsort(samples, nsamples, sizeof *samples, cmp_double);
    printf(" lat_n=%zu", nsamples);
    static const int pct[] = {50, 90, 99};
    for (size_t i = 0; i < sizeof pct / sizeof pct[0]; i++) {
        double v = 0;
        if (nsamples) {
            size_t rank = (nsamples * (size_t)pct[i] + 99) / 100;
            v = samples[rank ? rank - 1 : 0];
        }
        printf(" lat_p%d_ms=%.2f", pct[i], 1000 * v);
    }
    printf(" lat_max_ms=%.2f", 1000 * st.lat_max);
}

void
note_tls(struct conn *c)
{
    if (!st.cipher[0]) {
        snprintf(st.cipher, sizeof st.cipher, "%s", SSL_get_cipher_name(c->ssl));
        snprintf(st.version, sizeof st.version, "%s", SSL_get_version(c->ssl));
    }
    if (SSL_session_reused(c->ssl))
        st.resumed++;
    if (opt.resume) {
        SSL_SESSION *s = SSL_get1_session(c->ssl);
        if (opt.verbose)
            fprintf(stderr, "session: reused=%d resumable=%d ticket=%d\n",
                    SSL_session_reused(c->ssl), s ? SSL_SESSION_is_resumable(s) : -1,
                    s ? SSL_SESSION_has_ticket(s) : -1);
        if (s && SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(resume_session);
            resume_session = s;
        } else {
            SSL_SESSION_free(s);
        }
    }
}

/* One step of the client handshake; on success the connection runs its dialogue. */
static void
tls_step(struct conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            set_events(c, EPOLLIN);
        } else if (e == SSL_ERROR_WANT_WRITE) {
            set_events(c, EPOLLIN | EPOLLOUT);
        } else {
            unsigned long le = ERR_get_error();
            warnx("tls handshake failed: %s", le ? ERR_error_string(le, NULL) : "closed");
            finish(c, 0);
        }
        return;
    }
    c->st = C_RUN;
    set_events(c, EPOLLIN);
    on_tls_ready(c);
}

void
tls_start(struct conn *c)
{
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "mx.moat.test");
    SSL_set_connect_state(c->ssl);
    if (opt.resume && resume_session)
        SSL_set_session(c->ssl, resume_session);
    c->st = C_TLS;
    tls_step(c);
}

static void
process_input(struct conn *c)
{
    size_t pos = 0;
    while (pos < c->inlen && c->st != C_DEAD) {
        if (c->literal > 0) {
            size_t take = c->inlen - pos;
            if ((long long)take > c->literal)
                take = (size_t)c->literal;
            c->literal -= (long long)take;
            st.bytes += (long long)take;
            pos += take;
            continue;
        }
        char *nl = memchr(c->in + pos, '\n', c->inlen - pos);
        if (!nl)
            break;
        *nl = '\0';
        if (nl > c->in + pos && nl[-1] == '\r')
            nl[-1] = '\0';
        char *line = c->in + pos;
        pos = (size_t)(nl - c->in) + 1;
        on_line(c, line);
        if (c->st == C_TLS) { /* STARTTLS: plaintext after the 220 is discarded */
            c->inlen = 0;
            return;
        }
    }
    if (c->st == C_DEAD)
        return;
    if (pos == 0 && c->inlen == INBUF) {
        warnx("line too long");
        finish(c, 0);
        return;
    }
    memmove(c->in, c->in + pos, c->inlen - pos);
    c->inlen -= pos;
}

static void
on_eof(struct conn *c)
{
    if (opt.mode == M_HOLD && c->ok) { /* moat closed a held session */
        warnx("a held session was closed by the server");
        c->st = C_DEAD;
        close(c->fd);
        return;
    }
    if (on_eof_expected(c)) {
        finish(c, 1);
        return;
    }
    warnx("connection closed by the server (step %d)", c->pstate);
    finish(c, 0);
}

static void
read_input(struct conn *c)
{
    for (int rounds = 0; rounds < 64 && c->st == C_RUN; rounds++) {
        size_t space = INBUF - c->inlen;
        int n;
        if (c->ssl) {
            n = SSL_read(c->ssl, c->in + c->inlen, (int)space);
            if (n <= 0) {
                int e = SSL_get_error(c->ssl, n);
                if (e == SSL_ERROR_WANT_READ)
                    return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    set_events(c, EPOLLIN | EPOLLOUT);
                    return;
                }
                on_eof(c);
                return;
            }
        } else {
            n = (int)read(c->fd, c->in + c->inlen, space);
            if (n < 0) {
                if (errno == EAGAIN)
                    return;
                on_eof(c);
                return;
            }
            if (n == 0) {
                on_eof(c);
                return;
            }
        }
        c->inlen += (size_t)n;
        process_input(c);
    }
}

static void
on_event(struct conn *c, uint32_t ev)
{
    if (c->st == C_DEAD)
        return;
    if (c->st == C_CONNECT) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            warnx("connect: %s", strerror(err));
            finish(c, 0);
            return;
        }
        if (opt.tls) {
            tls_start(c);
        } else {
            c->st = C_RUN;
            set_events(c, EPOLLIN);
        }
    } else if (c->st == C_TLS) {
        tls_step(c);
    }
    if (c->st == C_RUN && (ev & EPOLLOUT) && c->outlen > c->outoff)
        if (flush_out(c) < 0)
            return;
    if (c->st == C_RUN)
        read_input(c);
}

static int
start_conn(void)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        warnx("out of memory");
        return -1;
    }
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        warnx("socket: %s", strerror(errno));
        free(c);
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    int span = opt.src_hi - opt.src_lo + 1;
    src.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(opt.src_lo + src_next++ % span));
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, opt.host, &dst.sin_addr);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0 ||
        (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)) {
        warnx("connect: %s", strerror(errno));
        close(c->fd);
        free(c);
        st.started++;
        st.fail++;
        return 0;
    }
    c->t0 = now();
    c->events = EPOLLOUT;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
    st.started++;
    st.active++;
    return 0;
}

/* May another connection start now? */
static int
want_more(double t_end_work)
{
    switch (opt.mode) {
    case M_HANDSHAKE:
        /* -R: one connection first, to get a ticket; then resumed ones. */
        if (opt.resume && !resume_session && st.started > 0)
            return 0;
        return now() < t_end_work;
    case M_HOLD:
    case M_IMAP_LOGIN:
    case M_SMTP_SUBMIT:
    case M_STARTTLS:
        return st.started < opt.total;
    case M_SMTP_SEND:
        return st.started * opt.per_conn < opt.total;
    case M_IMAP_FETCH:
        return st.started < 1;
    }
    return 0;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: moat_loadgen MODE -p PORT [options]\n"
            "  MODE: handshake | hold | smtp-send | imap-fetch | imap-login | smtp-submit |\n"
            "        starttls\n"
            "  -H HOST   server address (127.0.0.1)      -p PORT   server port\n"
            "  -t        implicit TLS                     -c N      connections at once (16)\n"
            "  -n N      sessions (hold, imap-login, smtp-submit, starttls), messages\n"
            "            (smtp-send), fetches (imap-fetch) (100)\n"
            "  -d SEC    handshake: duration (10)        -T SEC    hard time limit (120)\n"
            "  -s LO-HI  source addresses 127.0.0.LO..HI (2-250)\n"
            "  -u USER -w PASS   IMAP login / SMTP AUTH  -e        hold: SMTP EHLO\n"
            "  -m N      smtp-send: messages per connection (50)   -r RCPT recipient\n"
            "  -b BYTES  smtp-submit: message size (10240)\n"
            "  -R        handshake: resume from the latest session ticket\n"
            "  -P        starttls: the same dialogue without STARTTLS (EHLO, EHLO, QUIT)\n"
            "  -C SUITES TLS 1.3 suites (OpenSSL names)  -L LIST   TLS 1.2 only, this cipher list\n"
            "  -G GROUPS key exchange groups              -S ALGS   signature algorithms\n"
            "  -v        print lines read\n");
    exit(2);
}

static const char *const MODE_NAMES[] = {
    [M_HANDSHAKE] = "handshake",   [M_HOLD] = "hold",
    [M_SMTP_SEND] = "smtp-send",   [M_IMAP_FETCH] = "imap-fetch",
    [M_IMAP_LOGIN] = "imap-login", [M_SMTP_SUBMIT] = "smtp-submit",
    [M_STARTTLS] = "starttls",
};

static void
parse_args(int argc, char **argv)
{
    if (argc < 2)
        usage();
    size_t m = 0;
    while (m < sizeof MODE_NAMES / sizeof MODE_NAMES[0] && strcmp(argv[1], MODE_NAMES[m]))
        m++;
    if (m == sizeof MODE_NAMES / sizeof MODE_NAMES[0])
        usage();
    opt.mode = (enum mode)m;
    optind = 2;
    int ch;
    while ((ch = getopt(argc, argv, "H:p:tc:n:d:T:s:u:w:em:r:b:RC:L:G:S:Pv")) != -1) {
        switch (ch) {
        case 'H':
            opt.host = optarg;
            break;
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 't':
            opt.tls = 1;
            break;
        case 'c':
            opt.conc = atoi(optarg);
            break;
        case 'n':
            opt.total = atol(optarg);
            break;
        case 'd':
            opt.duration = atof(optarg);
            break;
        case 'T':
            opt.timeout = atof(optarg);
            break;
        case 's':
            if (sscanf(optarg, "%d-%d", &opt.src_lo, &opt.src_hi) != 2)
                usage();
            break;
        case 'u':
            opt.user = optarg;
            break;
        case 'w':
            opt.pass = optarg;
            break;
        case 'P':
            opt.no_starttls = 1;
            break;
        case 'e':
            opt.ehlo = 1;
            break;
        case 'm':
            opt.per_conn = atoi(optarg);
            break;
        case 'r':
            opt.rcpt = optarg;
            break;
        case 'b':
            opt.body_bytes = (size_t)atol(optarg);
            break;
        case 'R':
            opt.resume = 1;
            break;
        case 'C':
            opt.ciphersuites = optarg;
            break;
        case 'L':
            opt.cipher_list = optarg;
            break;
        case 'G':
            opt.groups = optarg;
            break;
        case 'S':
            opt.sigalgs = optarg;
            break;
        case 'v':
            opt.verbose = 1;
            break;
        default:
            usage();
        }
    }
    int needs_user =
        opt.mode == M_IMAP_FETCH || opt.mode == M_IMAP_LOGIN || opt.mode == M_SMTP_SUBMIT;
    if (opt.port <= 0 || opt.conc <= 0 || opt.total <= 0 || opt.per_conn <= 0 || opt.src_lo < 2 ||
        opt.src_hi > 254 || opt.src_lo > opt.src_hi || (needs_user && !opt.user) ||
        (opt.user && !opt.pass) || opt.body_bytes > OUTBUF - 1024 ||
        (opt.resume && (opt.mode != M_HANDSHAKE || !opt.tls)))
        usage();
}

static SSL_CTX *
client_tls(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    /* No cache: every handshake is a full one, unless -R hands a session over explicitly. */
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (opt.ciphersuites && !SSL_CTX_set_ciphersuites(c, opt.ciphersuites)) {
        fprintf(stderr, "bad -C\n");
        exit(2);
    }
    if (opt.cipher_list) {
        SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
        if (!SSL_CTX_set_cipher_list(c, opt.cipher_list)) {
            fprintf(stderr, "bad -L\n");
            exit(2);
        }
    }
    if (opt.groups && !SSL_CTX_set1_groups_list(c, opt.groups)) {
        fprintf(stderr, "bad -G\n");
        exit(2);
    }
    if (opt.sigalgs && !SSL_CTX_set1_sigalgs_list(c, opt.sigalgs)) {
        fprintf(stderr, "bad -S\n");
        exit(2);
    }
    return c;
}

/* The event loop; bounded: it ends at the -T deadline whatever happens. */
static void
run(double t_start)
{
    double t_deadline = t_start + opt.timeout;
    double t_work_end = t_start + opt.duration;
    struct epoll_event evs[256];
    for (;;) {
        double t = now();
        if (t >= t_deadline) {
            warnx("time limit reached");
            break;
        }
        while (st.active < opt.conc && want_more(t_work_end))
            if (start_conn() < 0)
                break;
        if (st.active == 0 && !want_more(t_work_end))
            break;
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        while (dead) {
            struct conn *d = dead;
            dead = d->next_dead;
            free(d);
        }
    }
}

static void
hold_until_eof(double t_deadline)
{
    double left = t_deadline - now();
    struct pollfd p = {.fd = 0, .events = POLLIN};
    char buf[64];
    while (left > 0 && poll(&p, 1, (int)(left * 1000)) > 0 && read(0, buf, sizeof buf) > 0)
        left = t_deadline - now();
}

int
main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    ctx = client_tls();
    ep = epoll_create1(EPOLL_CLOEXEC);
    double t_start = now();
    run(t_start);
    double elapsed = now() - t_start;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;

    if (opt.mode == M_HOLD) {
        printf("ready ok=%ld fail=%ld secs=%.2f\n", st.ok, st.fail, elapsed);
        fflush(stdout);
        hold_until_eof(t_start + opt.timeout);
        return st.fail == 0 && st.ok > 0 ? 0 : 1;
    }
    double rate_secs = elapsed;
    if (opt.mode == M_IMAP_FETCH)
        rate_secs = st.t_last > st.t_first ? st.t_last - st.t_first : 0;
    long ops = opt.mode == M_HANDSHAKE ? st.ok : st.msgs;
    printf("mode=%s ok=%ld fail=%ld ops=%ld secs=%.3f rate=%.1f resumed=%ld version=%s "
           "cipher=%s client_cpu=%.2f",
           MODE_NAMES[opt.mode], st.ok, st.fail, ops, rate_secs,
           rate_secs > 0 ? ops / rate_secs : 0, st.resumed, st.version[0] ? st.version : "-",
           st.cipher[0] ? st.cipher : "-", cpu);
    if (opt.mode == M_IMAP_FETCH)
        printf(" bytes=%lld mb_per_s=%.1f", st.bytes,
               rate_secs > 0 ? st.bytes / rate_secs / 1e6 : 0);
    if (opt.mode == M_SMTP_SEND)
        printf(" msgs=%ld conns_ok=%ld conns_fail=%ld", st.msgs, st.ok, st.fail);
    print_latency();
    printf("\n");
    return st.fail == 0 && st.ok > 0 ? 0 : 1;
}
