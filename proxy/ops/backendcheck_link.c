/*
 * backendcheck_link.c: the backend check's connections and its report: connecting (with a
 * PROXY header where the backend's identity says so), sending, reading one line with a
 * deadline (plain sockets and poll(), never the event loop; a stop request is seen within
 * BC_SLICE_MS), and one report line per check. The dialogues (backendcheck_proto.c) and the
 * driver (backendcheck.c) use it; it calls neither.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backendcheck_int.h"
#include "proxy_proto.h"

#define BC_SLICE_MS 100 /* how often a wait looks at the stop flag */
#define BC_DETAIL_MAX 600

static const char *const status_names[] = {
    [BCHECK_OK] = "ok",
    [BCHECK_WARN] = "warn",
    [BCHECK_FAIL] = "fail",
};

const char *
bcheck_status_name(enum bcheck_status s)
{
    return (size_t)s < ARRAY_SIZE(status_names) ? status_names[s] : "?";
}

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

void
bc_report(struct bc_target *t, const char *check, enum bcheck_status st, const char *fmt, ...)
{
    char detail[BC_DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (st == BCHECK_FAIL)
        t->failures++;
    else if (st == BCHECK_WARN)
        t->warnings++;
    struct bcheck_line line = {t->backend->name, t->address, check, st, detail};
    t->report(&line, t->arg);
}

/* --- the connection --- */

static void
link_errno(struct bc_link *k, int err)
{
    k->error = strerror_r(err, k->error_buf, sizeof(k->error_buf));
}

/* Wait until the socket is ready for events. 0 ready; -1 at the deadline or on a stop. */
static int
link_wait(struct bc_link *k, short events, double deadline)
{
    for (;;) {
        if (k->t->stop != NULL && atomic_load(k->t->stop)) {
            k->error = "stopped";
            return -1;
        }
        double left = deadline - now_ms();
        if (left <= 0) {
            k->error = "timed out";
            return -1;
        }
        struct pollfd p = {.fd = k->fd, .events = events};
        int r = poll(&p, 1, (int)MOAT_MIN(left, (double)BC_SLICE_MS) + 1);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR) {
            link_errno(k, errno);
            return -1;
        }
    }
}

static void
doc_sockaddr(struct sockaddr_storage *ss, int af, const char *ip, unsigned port)
{
    memset(ss, 0, sizeof(*ss));
    if (af == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, ip, &a->sin_addr);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, ip, &a->sin6_addr);
    }
}

static unsigned
listener_port(const struct config_listener *l)
{
    const struct sockaddr_storage *ss = &l->addr;
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* The PROXY header moat would send for a TEST-NET client of family af on f's listener. */
static int
link_send_proxy(struct bc_link *k, const struct bc_family *f, int af)
{
    struct sockaddr_storage src, dst;
    doc_sockaddr(&src, af, af == AF_INET ? BC_CLIENT_V4 : BC_CLIENT_V6, BC_CLIENT_PORT);
    doc_sockaddr(&dst, af, af == AF_INET ? "192.0.2.2" : "2001:db8::2", listener_port(f->listener));
    if (k->t->backend->identity == IDENT_PROXY_V1) {
        char h[PROXY_V1_MAX];
        size_t n = proxy_v1_build(h, sizeof(h), (struct sockaddr *)&src, (struct sockaddr *)&dst);
        return n > 0 ? bc_send_raw(k, h, n) : -1;
    }
    bool tls = f->listener->tls != LTLS_NONE;
    struct proxy_tls_info info = {tls, tls ? "TLSv1.3" : NULL,
                                  tls ? "TLS_AES_128_GCM_SHA256" : NULL};
    unsigned char h[PROXY_V2_MAX];
    size_t n =
        proxy_v2_build(h, sizeof(h), (struct sockaddr *)&src, (struct sockaddr *)&dst, &info);
    return n > 0 ? bc_send_raw(k, (const char *)h, n) : -1;
}

static int
link_connect(struct bc_link *k)
{
    const struct bc_target *t = k->t;
    k->fd = socket(t->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) {
        link_errno(k, errno);
        return -1;
    }
    int one = 1; /* command, reply, command: no Nagle wait for the ACK of the last one */
    (void)setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(k->fd, t->addr, t->addr_len) != 0) {
        if (errno != EINPROGRESS) {
            link_errno(k, errno);
            return -1;
        }
        if (link_wait(k, POLLOUT, now_ms() + t->connect_ms) != 0)
            return -1;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            link_errno(k, err ? err : errno);
            return -1;
        }
    }
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    char text[INET6_ADDRSTRLEN] = "?";
    if (getsockname(k->fd, (struct sockaddr *)&local, &len) == 0) {
        if (local.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&local)->sin6_addr, text, sizeof(text));
        else
            inet_ntop(AF_INET, &((struct sockaddr_in *)&local)->sin_addr, text, sizeof(text));
    }
    snprintf(k->local, sizeof(k->local), "%s", text);
    return 0;
}

int
bc_open(struct bc_target *t, struct bc_link *k, const struct bc_family *f, int af,
        bool report_reach)
{
    memset(k, 0, sizeof(*k));
    k->fd = -1;
    k->t = t;
    int r = link_connect(k);
    if (report_reach && r == 0)
        bc_report(t, "reachable", BCHECK_OK, "connected from %s (moat's address as %s sees it)",
                  k->local, t->backend->name);
    else if (report_reach)
        bc_report(t, "reachable", BCHECK_FAIL, "cannot connect: %s", k->error);
    enum backend_identity id = t->backend->identity;
    if (r == 0 && (id == IDENT_PROXY_V1 || id == IDENT_PROXY_V2) && link_send_proxy(k, f, af) != 0)
        r = -1;
    if (r != 0)
        bc_close(k);
    return r;
}

void
bc_close(struct bc_link *k)
{
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
}

void
bc_keep_error(struct bc_link *k, const char *text)
{
    char copy[sizeof(k->error_buf)];
    snprintf(copy, sizeof(copy), "%s", text ? text : "-");
    memcpy(k->error_buf, copy, sizeof(copy));
    k->error = k->error_buf;
}

int
bc_send_raw(struct bc_link *k, const char *p, size_t n)
{
    double deadline = now_ms() + k->t->reply_ms;
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(k->fd, p + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            link_errno(k, errno);
            return -1;
        }
        if (link_wait(k, POLLOUT, deadline) != 0)
            return -1;
    }
    return 0;
}

int
bc_send(struct bc_link *k, const char *fmt, ...)
{
    char line[BC_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        k->error = "line too long";
        return -1;
    }
    return bc_send_raw(k, line, (size_t)n);
}

/* Printable ASCII only: a backend's bytes end up on a terminal and in the log. */
static size_t
copy_printable(char *out, size_t cap, const char *p, size_t n)
{
    size_t len = MOAT_MIN(n, cap - 1);
    for (size_t i = 0; i < len; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
    out[len] = '\0';
    return len;
}

int
bc_line(struct bc_link *k, char *out, size_t cap)
{
    double deadline = now_ms() + k->t->reply_ms;
    for (;;) {
        char *lf = memchr(k->in, '\n', k->in_len);
        if (lf != NULL) {
            size_t n = (size_t)(lf - k->in);
            size_t len = copy_printable(out, cap, k->in, n > 0 && lf[-1] == '\r' ? n - 1 : n);
            k->in_len -= n + 1;
            memmove(k->in, lf + 1, k->in_len);
            return (int)len;
        }
        if (k->in_len == sizeof(k->in)) {
            k->error = "line too long";
            return -1;
        }
        if (link_wait(k, POLLIN, deadline) != 0)
            return -1;
        ssize_t r = recv(k->fd, k->in + k->in_len, sizeof(k->in) - k->in_len, 0);
        if (r == 0) {
            k->error = "connection closed";
            return -1;
        }
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
            link_errno(k, errno);
            return -1;
        }
        if (r > 0)
            k->in_len += (size_t)r;
    }
}
