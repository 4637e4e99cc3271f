/*
 * moat_loadgen: a small load generator for moat's benchmarks (tests/bench/README.md).
 *
 * One thread, non-blocking sockets on epoll, OpenSSL as the TLS client (the client side should
 * cost less than the server it measures). Every run is bounded in count and in time (-T).
 * Clients bind to 127.0.0.LO..HI in turn (-s), never 127.0.0.1 (moat's own trusted address).
 *
 * Modes:
 *   handshake   open connections (-c at once) for -d seconds; each does a full TLS handshake
 *               (-t), reads the greeting line and closes. Reports handshakes per second.
 *   hold        open -n sessions (-c connecting at once) and keep them: read the greeting, and
 *               with -u/-w log in to IMAP (LOGIN), or with -e send SMTP EHLO. Prints
 *               "ready ok=N fail=F" when all are up, then waits for EOF on stdin (or -T).
 *   smtp-send   -n messages over connections of -m messages each (-c at once): EHLO, then
 *               MAIL/RCPT/DATA pipelined, the body, the final dot and the next transaction's
 *               MAIL/RCPT/DATA in one write. Reports messages per second.
 *   imap-fetch  one session: log in (-u/-w), SELECT INBOX, then -n times FETCH 1 BODY.PEEK[].
 *               Reports the literal bytes received per second.
 *
 * Output: one line of key=value on stdout (hold: the "ready" line first). Errors: stderr.
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

enum mode { M_HANDSHAKE, M_HOLD, M_SMTP_SEND, M_IMAP_FETCH };
enum cstate { C_CONNECT, C_TLS, C_RUN, C_DEAD };

#define INBUF (64 * 1024)
#define OUTBUF (16 * 1024)

struct conn {
    int fd;
    SSL *ssl;
    enum cstate st;
    int pstate;        /* protocol step */
    int reply;         /* smtp: final replies seen in the transaction loop */
    int sent;          /* smtp: messages accepted on this connection */
    int fetches;       /* imap-fetch: FETCH commands completed */
    long long literal; /* bytes of an IMAP literal still to consume */
    int ok;            /* the session did what it should */
    uint32_t events;   /* epoll interest */
    double t0;         /* connect time */
    size_t inlen, outlen, outoff;
    char in[INBUF];
    char out[OUTBUF];
    struct conn *next_dead;
};

static struct {
    enum mode mode;
    const char *host;
    int port;
    int tls;
    int conc;
    long total;
    double duration;
    double timeout;
    int src_lo, src_hi;
    const char *user, *pass;
    int ehlo;
    int per_conn;
    const char *rcpt;
    const char *ciphersuites, *cipher_list, *groups;
    int verbose;
} opt = {
    .host = "127.0.0.1",
    .conc = 16,
    .total = 100,
    .duration = 10,
    .timeout = 120,
    .src_lo = 2,
    .src_hi = 250,
    .per_conn = 50,
    .rcpt = "alice@example.test",
};

static struct {
    long started, ok, fail, active, msgs;
    long long bytes;
    double lat_sum, lat_max;
    double t_first, t_last; /* imap-fetch: timing of the fetch loop */
    char cipher[64], version[16];
} st;

static int ep;
static SSL_CTX *ctx;
static int src_next;
static struct conn *dead;
static int errors_shown;

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
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

static void
finish(struct conn *c, int ok)
{
    if (c->st == C_DEAD)
        return;
    if (ok)
        st.ok++;
    else
        st.fail++;
    st.active--;
    if (c->ssl)
        SSL_free(c->ssl);
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

static int
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

static const char SMTP_TXN[] = "MAIL FROM:<bench@sender.test>\r\nRCPT TO:<%s>\r\nDATA\r\n";

/* SMTP: the final line of a reply ("250 ..." or a bare "250"), its code; else 0. */
static int
smtp_final(const char *line)
{
    if (strlen(line) < 3 || (line[3] != ' ' && line[3] != '\0'))
        return 0;
    return atoi(line);
}

/* hold: the session is up; it counts as done but its connection stays open. */
static void
hold_ready(struct conn *c)
{
    c->pstate = 2;
    c->ok = 1;
    st.ok++;
    st.active--;
}

static void
on_line(struct conn *c, char *line)
{
    int code;
    if (opt.verbose)
        fprintf(stderr, "<< %s\n", line);
    switch (opt.mode) {
    case M_HANDSHAKE: {
        int good =
            !strncmp(line, "* OK", 4) || !strncmp(line, "220", 3) || !strncmp(line, "+OK", 3);
        if (!good)
            warnx("greeting: %s", line);
        double lat = now() - c->t0;
        st.lat_sum += lat;
        if (lat > st.lat_max)
            st.lat_max = lat;
        if (good && !st.cipher[0] && c->ssl) {
            snprintf(st.cipher, sizeof st.cipher, "%s", SSL_get_cipher_name(c->ssl));
            snprintf(st.version, sizeof st.version, "%s", SSL_get_version(c->ssl));
        }
        finish(c, good);
        return;
    }
    case M_HOLD:
        if (c->pstate == 0) {
            if (opt.user && !strncmp(line, "* OK", 4)) {
                c->pstate = 1;
                sendf(c, "a LOGIN \"%s\" \"%s\"\r\n", opt.user, opt.pass);
            } else if (opt.ehlo && smtp_final(line) == 220) {
                c->pstate = 1;
                sendf(c, "EHLO bench.test\r\n");
            } else if (!opt.user && !opt.ehlo) {
                hold_ready(c);
            } else if (!strncmp(line, "* BYE", 5) || !strncmp(line, "-ERR", 4) ||
                       smtp_final(line) >= 400) {
                warnx("greeting: %s", line);
                finish(c, 0);
            }
        } else if (c->pstate == 1) {
            if (opt.user && !strncmp(line, "a ", 2)) {
                if (strncmp(line, "a OK", 4)) {
                    warnx("login: %s", line);
                    finish(c, 0);
                    return;
                }
                hold_ready(c);
            } else if (opt.ehlo && (code = smtp_final(line)) != 0) {
                if (code != 250) {
                    warnx("ehlo: %s", line);
                    finish(c, 0);
                    return;
                }
                hold_ready(c);
            }
        }
        return;
    case M_SMTP_SEND:
        if ((code = smtp_final(line)) == 0)
            return;
        if (c->pstate == 0) { /* greeting */
            if (code != 220)
                goto bad;
            c->pstate = 1;
            sendf(c, "EHLO bench.test\r\n");
        } else if (c->pstate == 1) { /* EHLO */
            if (code != 250)
                goto bad;
            c->pstate = 2;
            c->reply = 0;
            sendf(c, SMTP_TXN, opt.rcpt);
        } else if (c->pstate == 2) { /* MAIL, RCPT, DATA, final dot; repeated */
            int step = c->reply++ % 4;
            if ((step < 2 && code / 100 != 2) || (step == 2 && code != 354) ||
                (step == 3 && code != 250))
                goto bad;
            if (step == 2) {
                int more = c->sent + 1 < opt.per_conn;
                char next[256];
                snprintf(next, sizeof next, SMTP_TXN, opt.rcpt);
                sendf(c,
                      "From: bench@sender.test\r\nTo: %s\r\nSubject: moat bench %d\r\n\r\n"
                      "A small message of the SMTP benchmark.\r\n.\r\n%s",
                      opt.rcpt, c->sent, more ? next : "QUIT\r\n");
            } else if (step == 3) {
                c->sent++;
                st.msgs++;
                if (c->sent >= opt.per_conn)
                    c->pstate = 3;
            }
        } else if (c->pstate == 3) { /* QUIT */
            finish(c, code == 221);
        }
        return;
    bad:
        warnx("smtp: unexpected reply in step %d/%d: %s", c->pstate, c->reply, line);
        finish(c, 0);
        return;
    case M_IMAP_FETCH: {
        size_t len = strlen(line);
        if (len > 2 && line[len - 1] == '}') { /* "* 1 FETCH (BODY[] {N}" */
            char *brace = strrchr(line, '{');
            if (brace)
                c->literal = atoll(brace + 1);
            return;
        }
        if (c->pstate == 0 && !strncmp(line, "* OK", 4)) {
            c->pstate = 1;
            sendf(c, "a LOGIN \"%s\" \"%s\"\r\n", opt.user, opt.pass);
        } else if (c->pstate == 1 && !strncmp(line, "a ", 2)) {
            if (strncmp(line, "a OK", 4))
                goto imap_bad;
            c->pstate = 2;
            sendf(c, "b SELECT INBOX\r\n");
        } else if (c->pstate == 2 && !strncmp(line, "b ", 2)) {
            if (strncmp(line, "b OK", 4))
                goto imap_bad;
            c->pstate = 3;
            st.t_first = now();
            sendf(c, "c FETCH 1 BODY.PEEK[]\r\n");
        } else if (c->pstate == 3 && !strncmp(line, "c ", 2)) {
            if (strncmp(line, "c OK", 4))
                goto imap_bad;
            st.t_last = now();
            if (++c->fetches < opt.total) {
                sendf(c, "c FETCH 1 BODY.PEEK[]\r\n");
            } else {
                c->pstate = 4;
                sendf(c, "z LOGOUT\r\n");
            }
        } else if (c->pstate == 4 && !strncmp(line, "z ", 2)) {
            finish(c, 1);
        }
        return;
    imap_bad:
        warnx("imap: %s", line);
        finish(c, 0);
        return;
    }
    }
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
    if (opt.mode == M_SMTP_SEND && c->pstate == 3) {
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
            c->ssl = SSL_new(ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_tlsext_host_name(c->ssl, "mx.moat.test");
            SSL_set_connect_state(c->ssl);
            c->st = C_TLS;
        } else {
            c->st = C_RUN;
            set_events(c, EPOLLIN);
        }
    }
    if (c->st == C_TLS) {
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
        return now() < t_end_work;
    case M_HOLD:
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
            "  MODE: handshake | hold | smtp-send | imap-fetch\n"
            "  -H HOST   server address (127.0.0.1)      -p PORT   server port\n"
            "  -t        implicit TLS                     -c N      connections at once (16)\n"
            "  -n N      sessions (hold), messages (smtp-send), fetches (imap-fetch) (100)\n"
            "  -d SEC    handshake: duration (10)        -T SEC    hard time limit (120)\n"
            "  -s LO-HI  source addresses 127.0.0.LO..HI (2-250)\n"
            "  -u USER -w PASS   IMAP login             -e        hold: SMTP EHLO\n"
            "  -m N      smtp-send: messages per connection (50)   -r RCPT recipient\n"
            "  -C SUITES TLS 1.3 suites (OpenSSL names)  -L LIST   TLS 1.2 only, this cipher list\n"
            "  -G GROUPS key exchange groups              -v        print lines read\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *m = argv[1];
    if (!strcmp(m, "handshake"))
        opt.mode = M_HANDSHAKE;
    else if (!strcmp(m, "hold"))
        opt.mode = M_HOLD;
    else if (!strcmp(m, "smtp-send"))
        opt.mode = M_SMTP_SEND;
    else if (!strcmp(m, "imap-fetch"))
        opt.mode = M_IMAP_FETCH;
    else
        usage();
    optind = 2;
    int ch;
    while ((ch = getopt(argc, argv, "H:p:tc:n:d:T:s:u:w:em:r:C:L:G:v")) != -1) {
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
        case 'e':
            opt.ehlo = 1;
            break;
        case 'm':
            opt.per_conn = atoi(optarg);
            break;
        case 'r':
            opt.rcpt = optarg;
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
        case 'v':
            opt.verbose = 1;
            break;
        default:
            usage();
        }
    }
    if (opt.port <= 0 || opt.conc <= 0 || opt.total <= 0 || opt.per_conn <= 0 || opt.src_lo < 2 ||
        opt.src_hi > 254 || opt.src_lo > opt.src_hi || (opt.mode == M_IMAP_FETCH && !opt.user) ||
        (opt.user && !opt.pass))
        usage();
    signal(SIGPIPE, SIG_IGN);

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* every handshake is a full one */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (opt.ciphersuites && !SSL_CTX_set_ciphersuites(ctx, opt.ciphersuites)) {
        fprintf(stderr, "bad -C\n");
        return 2;
    }
    if (opt.cipher_list) {
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
        if (!SSL_CTX_set_cipher_list(ctx, opt.cipher_list)) {
            fprintf(stderr, "bad -L\n");
            return 2;
        }
    }
    if (opt.groups && !SSL_CTX_set1_groups_list(ctx, opt.groups)) {
        fprintf(stderr, "bad -G\n");
        return 2;
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    double t_start = now();
    double t_deadline = t_start + opt.timeout;
    double t_work_end = t_start + opt.duration;
    struct epoll_event evs[256];
    for (;;) {
        /* Bounded: the loop ends at the deadline whatever happens. */
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
    double elapsed = now() - t_start;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;

    switch (opt.mode) {
    case M_HANDSHAKE:
        printf("mode=handshake ok=%ld fail=%ld secs=%.2f rate=%.1f lat_avg_ms=%.2f "
               "lat_max_ms=%.2f version=%s cipher=%s client_cpu=%.2f\n",
               st.ok, st.fail, elapsed, st.ok / elapsed,
               st.ok + st.fail ? 1000 * st.lat_sum / (double)(st.ok + st.fail) : 0,
               1000 * st.lat_max, st.version[0] ? st.version : "-", st.cipher[0] ? st.cipher : "-",
               cpu);
        break;
    case M_HOLD:
        printf("ready ok=%ld fail=%ld secs=%.2f\n", st.ok, st.fail, elapsed);
        fflush(stdout);
        {
            /* Hold until stdin closes or the time limit. */
            double left = t_deadline - now();
            struct pollfd p = {.fd = 0, .events = POLLIN};
            char buf[64];
            while (left > 0 && poll(&p, 1, (int)(left * 1000)) > 0 && read(0, buf, sizeof buf) > 0)
                left = t_deadline - now();
        }
        break;
    case M_SMTP_SEND:
        printf("mode=smtp-send msgs=%ld conns_ok=%ld conns_fail=%ld secs=%.2f rate=%.1f "
               "client_cpu=%.2f\n",
               st.msgs, st.ok, st.fail, elapsed, st.msgs / elapsed, cpu);
        break;
    case M_IMAP_FETCH: {
        double secs = st.t_last > st.t_first ? st.t_last - st.t_first : 0;
        printf("mode=imap-fetch ok=%ld fail=%ld bytes=%lld secs=%.3f mb_per_s=%.1f "
               "client_cpu=%.2f\n",
               st.ok, st.fail, st.bytes, secs, secs > 0 ? st.bytes / secs / 1e6 : 0, cpu);
        break;
    }
    }
    return st.fail == 0 && st.ok > 0 ? 0 : 1;
}
