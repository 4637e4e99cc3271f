/*
 * listener.c: listening sockets and accept, on the main thread's loop. Admission control runs
 * here, once per connection and before any TLS work: a refused client gets its protocol's
 * cheap refusal (or a plain close on implicit-TLS ports) and never reaches a worker. Out of file
 * descriptors, a reserve descriptor is given up for a moment to take the next client off the
 * backlog and refuse it the same way; when even that fails, accept pauses briefly instead of
 * spinning. Listeners behind a balancer (PROXY protocol) or in a fleet admit in two steps: the
 * client-independent part here, the rest in intake.c (on the worker). On reload, sockets whose
 * address is unchanged are kept (no connection is refused meanwhile), new ones bound, removed
 * ones closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admission.h"
#include "config.h"
#include "intake.h"
#include "listener.h"
#include "protocol.h"
#include "log.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

#define ACCEPTS_PER_EVENT 64
#define EMFILE_PAUSE_S 0.1

struct lsock {
    int fd;
    ev_io io;
    const struct config_listener *conf;
    struct stats_listener *stats;
    struct listeners *set;
    bool fresh; /* bound by this (re)load, not inherited */
};

struct listeners {
    struct lsock *socks;
    size_t n;
    struct ev_loop *loop;
    ev_timer resume;
    struct config *conf;
    struct tls_ctx *tls;
    struct worker **workers;
    unsigned nworkers;
    double last_emfile_log;
    double last_nofd_refusal_log;
    int reserve_fd; /* /dev/null, closed for a moment to refuse a client when out of fds */
};

static int
bind_one(const struct config_listener *l, char *err, size_t cap)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, cap, "listener %s: socket: %s", l->name, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) != 0 || listen(fd, 511) != 0) {
        snprintf(err, cap, "listener %s: cannot listen: %s", l->name, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void
listeners_register_stats(struct listeners *ls, const struct config *conf)
{
    stats_deactivate_all();
    for (size_t i = 0; i < ls->n; i++)
        ls->socks[i].stats =
            stats_register(ls->socks[i].conf->name, listener_proto_name(ls->socks[i].conf->proto));
}

static size_t
listener_count(const struct config *conf)
{
    size_t n = 0;
    for (const struct config_listener *l = conf->listeners; l != NULL; l = l->next)
        n++;
    return n;
}

static void listeners_watch(struct listeners *ls);

struct listeners *
listeners_open(const struct config *conf, char *err, size_t cap)
{
    struct listeners *ls = xcalloc(1, sizeof(*ls));
    ls->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    size_t n = listener_count(conf);
    ls->socks = xcalloc(n ? n : 1, sizeof(*ls->socks));
    for (const struct config_listener *l = conf->listeners; l != NULL; l = l->next) {
        int fd = bind_one(l, err, cap);
        if (fd < 0) {
            listeners_close(ls);
            return NULL;
        }
        struct lsock *k = &ls->socks[ls->n++];
        k->fd = fd;
        k->conf = l;
        k->set = ls;
        k->fresh = true;
    }
    listeners_register_stats(ls, conf);
    return ls;
}

/* The /metrics control behind an admission refusal. */
static enum stat_refusal
admission_control(enum admission_verdict v)
{
    switch (v) {
    case ADMIT_DENIED:
    case ADMIT_PROXY_UNTRUSTED:
        return STAT_REFUSED_ACCESS;
    case ADMIT_OK:
    case ADMIT_MAX_SESSIONS:
    case ADMIT_PER_IP:
    case ADMIT_RATE:
    case ADMIT_TLS_HANDSHAKES:
    case ADMIT_TABLE_FULL:
    case ADMIT_BANNED:
    case ADMIT_PROXY_HEADER:
        return STAT_REFUSED_LIMIT;
    }
    return STAT_REFUSED_LIMIT;
}

/* One formatted line, or nothing when it does not fit whole (never a length beyond the text). */
static int refusal_line(char *out, size_t cap, const char *fmt, ...) MOAT_PRINTF(3, 4);

static int
refusal_line(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n > 0 && (size_t)n < cap ? n : 0;
}

int
listener_refusal(char *out, size_t cap, const struct config *conf, const struct config_listener *l,
                 enum admission_verdict v)
{
    const struct protocol_refusals *r = &l->protocol->refusals;
    bool denied = v == ADMIT_DENIED;
    const char *start = denied ? r->denied : r->busy;
    /* a balancer that is not trusted or did not speak PROXY is not told anything */
    if (l->tls == LTLS_IMPLICIT || start == NULL || v == ADMIT_PROXY_UNTRUSTED ||
        v == ADMIT_PROXY_HEADER)
        return 0;
    return refusal_line(out, cap, "%s%s%s%s\r\n", start, r->names_host ? conf->hostname : "",
                        r->names_host ? " " : "",
                        denied ? "Access denied" : admission_refusal_text(v));
}

static void
refuse(int fd, const struct config *conf, const struct config_listener *l, enum admission_verdict v)
{
    char line[512]; /* a 253-character hostname fits */
    int n = listener_refusal(line, sizeof(line), conf, l, v);
    if (n > 0)
        (void)send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

void
listener_refuse(int fd, const struct config *conf, const struct config_listener *l,
                const struct sockaddr *peer, enum admission_verdict v, struct stats_listener *st)
{
    admission_log(l, peer, v);
    stats_refusal(st != NULL ? st : stats_find(l->name), admission_control(v));
    refuse(fd, conf, l, v);
}

static void
on_resume(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct listeners *ls = t->data;
    for (size_t i = 0; i < ls->n; i++)
        ev_io_start(loop, &ls->socks[i].io);
}

static void
pause_accepting(struct listeners *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        ev_io_stop(ls->loop, &ls->socks[i].io);
    ev_timer_set(&ls->resume, EMFILE_PAUSE_S, 0.);
    ev_timer_start(ls->loop, &ls->resume);
    double now = ev_now(ls->loop);
    if (now - ls->last_emfile_log > 10) {
        ls->last_emfile_log = now;
        log_msg(LOG_WARN, EV_ACCEPT_PAUSED, "error=out_of_fds pause_ms=100");
    }
}

/* Out of fds: free the reserve, accept the next client and refuse it with its protocol's
 * temporary error ("Too many connections"), then take the reserve back. False when there was
 * nobody to refuse or the reserve could not be had (then accept pauses). */
static bool
refuse_out_of_fds(struct listeners *ls, struct lsock *k)
{
    if (ls->reserve_fd < 0)
        ls->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (ls->reserve_fd < 0)
        return false;
    close(ls->reserve_fd);
    int fd = accept4(k->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        stats_refusal(k->stats, STAT_REFUSED_LIMIT);
        refuse(fd, ls->conf, k->conf, ADMIT_MAX_SESSIONS);
    }
    ls->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    double now = ev_now(ls->loop);
    if (now - ls->last_nofd_refusal_log > 10) {
        ls->last_nofd_refusal_log = now;
        log_msg(LOG_WARN, EV_REFUSED, "reason=out_of_fds listener=%s", k->conf->name);
    }
    return true;
}

static void
on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lsock *k = w->data;
    struct listeners *ls = k->set;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(k->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EINTR || err == ECONNABORTED)
                continue;
            if ((err == EMFILE || err == ENFILE) && refuse_out_of_fds(ls, k))
                continue;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
                pause_accepting(ls);
            return;
        }
        bool later = intake_wanted(ls->conf, k->conf);
        enum admission_verdict v =
            later ? intake_check_accept(ls->conf, k->conf, (struct sockaddr *)&peer)
                  : admission_check(ls->conf, k->conf, (struct sockaddr *)&peer, len);
        if (v != ADMIT_OK) {
            listener_refuse(fd, ls->conf, k->conf, (struct sockaddr *)&peer, v, k->stats);
            continue;
        }
        struct tls_ctx *tls = k->conf->tls != LTLS_NONE ? ls->tls : NULL;
        if (later)
            workers_dispatch_intake(ls->workers, ls->nworkers, fd, (struct sockaddr *)&peer, len,
                                    ls->conf, k->conf, tls);
        else
            workers_dispatch(ls->workers, ls->nworkers, fd, (struct sockaddr *)&peer, len, ls->conf,
                             k->conf, tls);
    }
}

void
listeners_start(struct listeners *ls, struct ev_loop *loop, struct config *conf,
                struct tls_ctx *tls, struct worker **workers, unsigned nworkers)
{
    ls->loop = loop;
    ls->conf = conf;
    ls->tls = tls;
    ls->workers = workers;
    ls->nworkers = nworkers;
    ev_init(&ls->resume, on_resume);
    ls->resume.data = ls;
    listeners_watch(ls);
}

static void
listeners_watch(struct listeners *ls)
{
    for (size_t i = 0; i < ls->n; i++) {
        struct lsock *k = &ls->socks[i];
        ev_io_init(&k->io, on_accept, k->fd, EV_READ);
        k->io.data = k;
        ev_io_start(ls->loop, &k->io);
        if (k->fresh)
            log_msg(LOG_INFO, EV_LISTENING, "listener=%s proto=%s tls=%s", k->conf->name,
                    listener_proto_name(k->conf->proto), listener_tls_name(k->conf->tls));
        k->fresh = false;
    }
}

static bool
same_address(const struct config_listener *a, const struct config_listener *b)
{
    return a->addr_len == b->addr_len && memcmp(&a->addr, &b->addr, a->addr_len) == 0;
}

/* The socket of old that listens on l's address and is not taken yet, or -1. */
static int
take_socket(struct listeners *old, bool *taken, const struct config_listener *l)
{
    for (size_t j = 0; j < old->n; j++) {
        if (!taken[j] && same_address(old->socks[j].conf, l)) {
            taken[j] = true;
            return old->socks[j].fd;
        }
    }
    return -1;
}

int
listeners_reload(struct listeners *ls, struct config *conf, struct tls_ctx *tls, char *err,
                 size_t cap)
{
    size_t n = listener_count(conf);
    struct lsock *socks = xcalloc(n ? n : 1, sizeof(*socks));
    bool *taken = xcalloc(ls->n ? ls->n : 1, sizeof(*taken));
    size_t i = 0;
    for (const struct config_listener *l = conf->listeners; l != NULL; l = l->next, i++) {
        socks[i].conf = l;
        socks[i].set = ls;
        socks[i].fd = take_socket(ls, taken, l);
        if (socks[i].fd >= 0)
            continue;
        socks[i].fresh = true;
        socks[i].fd = bind_one(l, err, cap);
        if (socks[i].fd < 0) {
            /* refuse the whole reload: close only what this attempt opened */
            for (size_t k = 0; k < i; k++) {
                if (socks[k].fresh)
                    close(socks[k].fd);
            }
            free(socks);
            free(taken);
            return -1;
        }
    }
    for (size_t j = 0; j < ls->n; j++) {
        ev_io_stop(ls->loop, &ls->socks[j].io);
        if (!taken[j]) {
            log_msg(LOG_INFO, EV_LISTENER_CLOSED, "listener=%s", ls->socks[j].conf->name);
            close(ls->socks[j].fd);
        }
    }
    ev_timer_stop(ls->loop, &ls->resume);
    free(ls->socks);
    free(taken);
    ls->socks = socks;
    ls->n = n;
    ls->conf = conf;
    ls->tls = tls;
    listeners_register_stats(ls, conf);
    listeners_watch(ls);
    return 0;
}

void
listeners_close(struct listeners *ls)
{
    if (ls == NULL)
        return;
    for (size_t i = 0; i < ls->n; i++) {
        if (ls->loop != NULL)
            ev_io_stop(ls->loop, &ls->socks[i].io);
        close(ls->socks[i].fd);
    }
    if (ls->loop != NULL)
        ev_timer_stop(ls->loop, &ls->resume);
    if (ls->reserve_fd >= 0)
        close(ls->reserve_fd);
    free(ls->socks);
    free(ls);
}
