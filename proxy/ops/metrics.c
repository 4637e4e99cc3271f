/*
 * metrics.c: the metrics and health endpoint (see metrics.h) and the backend reachability
 * probes behind /readyz. Runs on the main loop; never blocks: a connection that is slow, sends
 * garbage or too much gets a short error or is closed at its deadline, and beyond a small
 * number of connections new ones are closed at once. Never touches a session.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "stats.h"

#define METRICS_MAX_CONNS 16
#define METRICS_REQUEST_MAX 2048
#define METRICS_BODY_MAX (512 * 1024)
#define METRICS_CONN_TIMEOUT_S 5.0
#define PROBE_INTERVAL_S 2.0
#define PROBE_TIMEOUT_S 1.0
#define PROBE_MAX 64

struct mconn {
    int fd;
    ev_io io;
    ev_timer timer;
    struct metrics *m;
    char in[METRICS_REQUEST_MAX];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    struct mconn *next;
};

struct probe {
    int fd;
    ev_io io;
    size_t backend; /* index into the generation's backend list */
    struct metrics *m;
};

struct metrics {
    int fd;
    ev_io io;
    struct ev_loop *loop;
    struct config *conf; /* one reference */
    struct mconn *conns;
    unsigned nconns;
    ev_timer probe_timer;   /* next cycle */
    ev_timer probe_timeout; /* end of the current cycle */
    struct probe probes[PROBE_MAX];
    size_t nprobes;
    bool up[PROBE_MAX]; /* per backend index, this cycle */
};

/* --- request parsing (pure) --- */

enum http_parse
metrics_parse_request(const char *p, size_t n, const char **path_out, size_t *path_len_out)
{
    const char *end = NULL;
    for (size_t i = 0; i + 1 < n && end == NULL; i++) {
        if (p[i] == '\n' && p[i + 1] == '\n')
            end = p + i;
        else if (p[i] == '\n' && i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
            end = p + i;
    }
    if (end == NULL)
        return n >= METRICS_REQUEST_MAX ? HTTP_BAD : HTTP_MORE;
    const char *sp1 = memchr(p, ' ', (size_t)(end - p));
    if (sp1 == NULL)
        return HTTP_BAD;
    const char *path = sp1 + 1;
    const char *sp2 = memchr(path, ' ', (size_t)(end - path));
    if (sp2 == NULL || sp2 == path || path[0] != '/' || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return HTTP_BAD;
    size_t len = (size_t)(sp2 - path);
    const char *q = memchr(path, '?', len);
    *path_out = path;
    *path_len_out = q ? (size_t)(q - path) : len;
    size_t mlen = (size_t)(sp1 - p);
    if (mlen == 3 && memcmp(p, "GET", 3) == 0)
        return HTTP_GET;
    if (mlen == 4 && memcmp(p, "HEAD", 4) == 0)
        return HTTP_HEAD;
    return HTTP_BAD_METHOD;
}

/* --- connections --- */

static void
mconn_free(struct mconn *c)
{
    struct metrics *m = c->m;
    ev_io_stop(m->loop, &c->io);
    ev_timer_stop(m->loop, &c->timer);
    close(c->fd);
    for (struct mconn **pp = &m->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    m->nconns--;
    free(c->out);
    free(c);
}

static void
mconn_respond(struct mconn *c, int status, const char *reason, const char *body, size_t body_len,
              bool head)
{
    size_t cap = body_len + 256;
    c->out = xcalloc(1, cap);
    int n = snprintf(c->out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason,
                     status == 200 && body_len > 3 && body[0] == '#'
                         ? "text/plain; version=0.0.4; charset=utf-8"
                         : "text/plain; charset=utf-8",
                     body_len);
    c->out_len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
    if (!head) {
        memcpy(c->out + c->out_len, body, body_len);
        c->out_len += body_len;
    }
    ev_io_stop(c->m->loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(c->m->loop, &c->io);
}

/* /readyz: 200 when every listener's backend answered the last probe. */
static size_t
ready_body(struct metrics *m, char *out, size_t cap, bool *ready_out)
{
    size_t len = 0;
    *ready_out = true;
    for (const struct config_listener *l = m->conf->listeners; l != NULL; l = l->next) {
        struct stats_listener *st = stats_find(l->name);
        int r = st ? atomic_load(&st->ready) : -1;
        if (r != 1)
            *ready_out = false;
        int n = snprintf(out + len, cap - len, "%s backend=%s %s\n", l->name,
                         l->backend ? l->backend->name : "-",
                         r == 1   ? "up"
                         : r == 0 ? "down"
                                  : "unknown");
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
    return len;
}

static void
mconn_route(struct mconn *c, const char *path, size_t len, bool head)
{
    if (len == 8 && memcmp(path, "/metrics", 8) == 0) {
        char *body = xcalloc(1, METRICS_BODY_MAX);
        long n = stats_render(body, METRICS_BODY_MAX);
        if (n < 0)
            mconn_respond(c, 500, "Internal Server Error", "too many metrics\n", 17, head);
        else
            mconn_respond(c, 200, "OK", body, (size_t)n, head);
        free(body);
    } else if (len == 8 && memcmp(path, "/healthz", 8) == 0) {
        mconn_respond(c, 200, "OK", "ok\n", 3, head);
    } else if (len == 7 && memcmp(path, "/readyz", 7) == 0) {
        char body[4096];
        bool ready;
        size_t n = ready_body(c->m, body, sizeof(body), &ready);
        if (ready)
            mconn_respond(c, 200, "OK", body, n, head);
        else
            mconn_respond(c, 503, "Service Unavailable", body, n, head);
    } else {
        mconn_respond(c, 404, "Not Found", "not found\n", 10, head);
    }
}

static void
mconn_read(struct mconn *c)
{
    ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        mconn_free(c);
        return;
    }
    c->in_len += (size_t)r;
    const char *path = NULL;
    size_t len = 0;
    switch (metrics_parse_request(c->in, c->in_len, &path, &len)) {
    case HTTP_MORE:
        return;
    case HTTP_GET:
        mconn_route(c, path, len, false);
        return;
    case HTTP_HEAD:
        mconn_route(c, path, len, true);
        return;
    case HTTP_BAD_METHOD:
        mconn_respond(c, 405, "Method Not Allowed", "method not allowed\n", 19, false);
        return;
    case HTTP_BAD:
        mconn_respond(c, 400, "Bad Request", "bad request\n", 12, false);
        return;
    }
}

static void
mconn_write(struct mconn *c)
{
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (w <= 0) {
        mconn_free(c);
        return;
    }
    c->out_off += (size_t)w;
    if (c->out_off == c->out_len) {
        shutdown(c->fd, SHUT_WR);
        mconn_free(c);
    }
}

static void
on_mconn_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct mconn *c = w->data;
    if (c->out == NULL)
        mconn_read(c);
    else
        mconn_write(c);
}

static void
on_mconn_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    mconn_free(t->data);
}

/* Full: the oldest connection still without a complete request makes room, so clients that
 * hold connections open cannot lock the health checks out. */
static bool
metrics_evict_oldest(struct metrics *m)
{
    struct mconn *oldest = NULL;
    for (struct mconn *c = m->conns; c != NULL; c = c->next) {
        if (c->out == NULL)
            oldest = c; /* the list is newest first */
    }
    if (oldest != NULL)
        mconn_free(oldest);
    return oldest != NULL;
}

static void
on_metrics_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct metrics *m = w->data;
    for (int i = 0; i < 16; i++) {
        int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (m->nconns >= METRICS_MAX_CONNS && !metrics_evict_oldest(m)) {
            close(fd);
            continue;
        }
        int one = 1; /* a reply in pieces goes out without waiting for ACKs */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct mconn *c = xcalloc(1, sizeof(*c));
        c->fd = fd;
        c->m = m;
        ev_io_init(&c->io, on_mconn_io, fd, EV_READ);
        c->io.data = c;
        ev_timer_init(&c->timer, on_mconn_timeout, METRICS_CONN_TIMEOUT_S, 0.);
        c->timer.data = c;
        ev_io_start(loop, &c->io);
        ev_timer_start(loop, &c->timer);
        c->next = m->conns;
        m->conns = c;
        m->nconns++;
    }
}

/* --- backend probes --- */

static size_t
backend_index(const struct config *conf, const struct config_backend *b)
{
    size_t i = 0;
    for (const struct config_backend *x = conf->backends; x != NULL; x = x->next, i++) {
        if (x == b)
            return i;
    }
    return PROBE_MAX;
}

static void
probes_stop(struct metrics *m)
{
    for (size_t i = 0; i < m->nprobes; i++) {
        if (m->probes[i].fd >= 0) {
            ev_io_stop(m->loop, &m->probes[i].io);
            close(m->probes[i].fd);
            m->probes[i].fd = -1;
        }
    }
    m->nprobes = 0;
    ev_timer_stop(m->loop, &m->probe_timeout);
}

/* End of a cycle: publish each listener's readiness. */
static void
probes_publish(struct metrics *m)
{
    probes_stop(m);
    for (const struct config_listener *l = m->conf->listeners; l != NULL; l = l->next) {
        struct stats_listener *st = stats_find(l->name);
        size_t b = backend_index(m->conf, l->backend);
        if (st != NULL)
            atomic_store(&st->ready, b < PROBE_MAX && m->up[b] ? 1 : 0);
    }
}

static bool
probes_pending(const struct metrics *m)
{
    for (size_t i = 0; i < m->nprobes; i++) {
        if (m->probes[i].fd >= 0)
            return true;
    }
    return false;
}

static void
on_probe_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct probe *p = w->data;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
        p->m->up[p->backend] = true;
    ev_io_stop(loop, w);
    close(p->fd);
    p->fd = -1;
    if (!probes_pending(p->m))
        probes_publish(p->m);
}

static void
on_probe_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    probes_publish(t->data);
}

static void
probe_start(struct metrics *m, size_t b, const struct sockaddr_storage *addr, socklen_t len)
{
    if (m->nprobes == PROBE_MAX)
        return;
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (const struct sockaddr *)addr, len) == 0) {
        m->up[b] = true;
        close(fd);
        return;
    }
    if (errno != EINPROGRESS) {
        close(fd);
        return;
    }
    struct probe *p = &m->probes[m->nprobes++];
    p->fd = fd;
    p->backend = b;
    p->m = m;
    ev_io_init(&p->io, on_probe_io, fd, EV_WRITE);
    p->io.data = p;
    ev_io_start(m->loop, &p->io);
}

static void
on_probe_cycle(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct metrics *m = t->data;
    probes_stop(m);
    memset(m->up, 0, sizeof(m->up));
    size_t b = 0;
    for (const struct config_backend *x = m->conf->backends; x != NULL && b < PROBE_MAX;
         x = x->next, b++) {
        for (size_t i = 0; i < x->naddrs; i++)
            probe_start(m, b, &x->addrs[i], x->addr_lens[i]);
    }
    if (probes_pending(m)) {
        ev_timer_set(&m->probe_timeout, PROBE_TIMEOUT_S, 0.);
        ev_timer_start(loop, &m->probe_timeout);
    } else {
        probes_publish(m);
    }
}

/* --- lifecycle --- */

struct metrics *
metrics_open(const struct config *conf, char *err, size_t cap)
{
    err[0] = '\0';
    if (conf->metrics_addr_len == 0)
        return NULL;
    int fd = socket(conf->metrics_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 ||
        bind(fd, (const struct sockaddr *)&conf->metrics_addr, conf->metrics_addr_len) != 0 ||
        listen(fd, 64) != 0) {
        snprintf(err, cap, "metrics: cannot listen: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    struct metrics *m = xcalloc(1, sizeof(*m));
    m->fd = fd;
    return m;
}

void
metrics_start(struct metrics *m, struct ev_loop *loop, struct config *conf)
{
    if (m == NULL)
        return;
    m->loop = loop;
    m->conf = config_ref(conf);
    ev_io_init(&m->io, on_metrics_accept, m->fd, EV_READ);
    m->io.data = m;
    ev_io_start(loop, &m->io);
    ev_init(&m->probe_timeout, on_probe_timeout);
    m->probe_timeout.data = m;
    ev_timer_init(&m->probe_timer, on_probe_cycle, 0., PROBE_INTERVAL_S);
    m->probe_timer.data = m;
    ev_timer_start(loop, &m->probe_timer);
    log_msg(LOG_INFO, EV_METRICS_LISTENING, "paths=/metrics,/healthz,/readyz");
}

void
metrics_reload(struct metrics *m, struct config *conf)
{
    if (m == NULL)
        return;
    if (conf->metrics_addr_len != m->conf->metrics_addr_len ||
        memcmp(&conf->metrics_addr, &m->conf->metrics_addr, conf->metrics_addr_len) != 0)
        log_msg(LOG_WARN, EV_RELOAD_PARTIAL,
                "key=metrics error=\"the metrics address changes "
                "only with a restart\"");
    probes_stop(m);
    config_unref(m->conf);
    m->conf = config_ref(conf);
    on_probe_cycle(m->loop, &m->probe_timer, 0);
}

void
metrics_close(struct metrics *m)
{
    if (m == NULL)
        return;
    while (m->conns != NULL)
        mconn_free(m->conns);
    if (m->loop != NULL) {
        probes_stop(m);
        ev_timer_stop(m->loop, &m->probe_timer);
        ev_io_stop(m->loop, &m->io);
    }
    close(m->fd);
    if (m->conf != NULL)
        config_unref(m->conf);
    free(m);
}
