/*
 * listener.c: listening sockets and accept, on the main thread's loop. Admission control runs
 * here, once per connection and before any TLS work: a refused client gets its protocol's
 * cheap refusal (or a plain close on implicit-TLS ports) and never reaches a worker. Handles
 * EMFILE by pausing accept briefly instead of spinning.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admission.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "tls.h"
#include "worker.h"

#define ACCEPTS_PER_EVENT 64
#define EMFILE_PAUSE_S 0.1

struct lsock {
    int fd;
    ev_io io;
    const struct config_listener *conf;
    struct listeners *set;
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

struct listeners *
listeners_open(const struct config *conf, char *err, size_t cap)
{
    struct listeners *ls = xcalloc(1, sizeof(*ls));
    size_t n = 0;
    for (const struct config_listener *l = conf->listeners; l != NULL; l = l->next)
        n++;
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
    }
    return ls;
}

static void
refuse(int fd, const struct config *conf, const struct config_listener *l,
       enum admission_verdict v)
{
    char line[256];
    int n = admission_refusal(line, sizeof(line), conf, l, v);
    if (n > 0)
        (void)send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
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
        log_msg(LOG_WARN, "accept_paused", "error=out_of_fds pause_ms=100");
    }
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
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(ls);
            return;
        }
        enum admission_verdict v =
            admission_check(ls->conf, k->conf, (struct sockaddr *)&peer, len);
        if (v != ADMIT_OK) {
            admission_log(k->conf, (struct sockaddr *)&peer, v);
            refuse(fd, ls->conf, k->conf, v);
            continue;
        }
        struct tls_ctx *tls = k->conf->tls != LTLS_NONE ? ls->tls : NULL;
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
    for (size_t i = 0; i < ls->n; i++) {
        struct lsock *k = &ls->socks[i];
        ev_io_init(&k->io, on_accept, k->fd, EV_READ);
        k->io.data = k;
        ev_io_start(loop, &k->io);
        log_msg(LOG_INFO, "listening", "listener=%s proto=%s tls=%s", k->conf->name,
                listener_proto_name(k->conf->proto), listener_tls_name(k->conf->tls));
    }
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
    free(ls->socks);
    free(ls);
}
