/*
 * worker.c: a worker thread runs one libev loop and owns the sessions it was handed. It takes
 * new sockets from its queue (ev_async), re-dispatches kicked sessions and frees closed ones
 * from an idle watcher (never inside the callback that closed them), and drains on shutdown.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "cluster.h"
#include "dns.h"
#include "intake.h"
#include "log.h"
#include "session.h"
#include "session_env.h"
#include "tls.h"
#include "worker.h"

struct pending {
    int fd;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct config *conf;
    const struct config_listener *listener;
    struct tls_ctx *tls;
    bool intake; /* admission continues on the worker (intake.c) */
    struct pending *next;
};

struct worker {
    struct session_env env; /* first: the callbacks find the worker from it */
    unsigned index;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;
    ev_idle idle;
    ev_timer drain_timer;
    pthread_mutex_t lock;
    struct pending *queue;     /* guarded by lock */
    struct worker_msg *posted; /* guarded by lock: completions from other threads */
    bool drain_requested;      /* guarded by lock */
    double drain_grace_s;      /* guarded by lock */
    bool draining;
    atomic_uint nsessions;
    struct session *sessions;
    struct session *kick_list;
    struct session *dead_list;
};

static struct worker *
worker_of(struct session_env *e)
{
    return (struct worker *)((char *)e - offsetof(struct worker, env));
}

static void
worker_idle_start(struct worker *w)
{
    if (!ev_is_active(&w->idle))
        ev_idle_start(w->loop, &w->idle);
}

static void
worker_kick(struct session_env *e, struct session *s)
{
    struct worker *w = worker_of(e);
    if (s->kicked || s->closing)
        return;
    s->kicked = true;
    s->kick_next = w->kick_list;
    w->kick_list = s;
    worker_idle_start(w);
}

static void
worker_defer_finish(struct session_env *e, struct session *s)
{
    struct worker *w = worker_of(e);
    if (s->on_dead_list)
        return;
    s->on_dead_list = true;
    s->dead_next = w->dead_list;
    w->dead_list = s;
    worker_idle_start(w);
}

static void
worker_maybe_exit(struct worker *w)
{
    if (w->draining && w->sessions == NULL && w->dead_list == NULL)
        ev_break(w->loop, EVBREAK_ALL);
}

static void
worker_session_done(struct session_env *e, struct session *s)
{
    struct worker *w = worker_of(e);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else if (w->sessions == s)
        w->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    atomic_fetch_sub(&w->nsessions, 1);
    worker_defer_finish(e, s);
}

/* intake.c: a connection handed over by workers_dispatch_intake() was admitted (s is its new
 * session), or was refused (it is no longer counted). */
static void
worker_session_adopt(struct session_env *e, struct session *s)
{
    struct worker *w = worker_of(e);
    s->next = w->sessions;
    if (w->sessions != NULL)
        w->sessions->prev = s;
    w->sessions = s;
}

static void
worker_intake_dropped(struct session_env *e)
{
    struct worker *w = worker_of(e);
    atomic_fetch_sub(&w->nsessions, 1);
}

static void
on_idle(struct ev_loop *loop, ev_idle *ev, int revents)
{
    struct worker *w = ev->data;
    /* re-dispatch first: a kicked session may close and land on the dead list */
    while (w->kick_list != NULL) {
        struct session *s = w->kick_list;
        w->kick_list = s->kick_next;
        s->kick_next = NULL;
        s->kicked = false;
        session_kick_run(s);
    }
    while (w->dead_list != NULL) {
        struct session *s = w->dead_list;
        if (!s->closed) {
            session_finish(s); /* unlinks; s stays first on the dead list */
            continue;
        }
        w->dead_list = s->dead_next;
        session_free(s);
    }
    if (w->kick_list == NULL && w->dead_list == NULL)
        ev_idle_stop(loop, ev);
    worker_maybe_exit(w);
}

static void
worker_start_drain(struct worker *w, double grace_s)
{
    if (w->draining)
        return;
    w->draining = true;
    intake_drop_all(&w->env);
    for (struct session *s = w->sessions, *next; s != NULL; s = next) {
        next = s->next;
        session_shutdown(s);
    }
    ev_timer_set(&w->drain_timer, grace_s, 0.);
    ev_timer_start(w->loop, &w->drain_timer);
    worker_idle_start(w);
}

static void
on_drain_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    for (struct session *s = w->sessions, *next; s != NULL; s = next) {
        next = s->next;
        session_close(s, REASON_SHUTDOWN);
    }
    worker_idle_start(w);
}

static void
worker_post(struct session_env *e, struct worker_msg *m)
{
    struct worker *w = worker_of(e);
    pthread_mutex_lock(&w->lock);
    m->next = w->posted;
    w->posted = m;
    pthread_mutex_unlock(&w->lock);
    ev_async_send(w->loop, &w->wake);
}

/* Run posted messages in the order they were posted (the list is LIFO). */
static void
worker_run_posted(struct worker_msg *m)
{
    struct worker_msg *ordered = NULL;
    while (m != NULL) {
        struct worker_msg *n = m->next;
        m->next = ordered;
        ordered = m;
        m = n;
    }
    while (ordered != NULL) {
        struct worker_msg *n = ordered->next;
        ordered->run(ordered);
        ordered = n;
    }
}

static void
on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    struct worker *w = a->data;
    pthread_mutex_lock(&w->lock);
    struct pending *q = w->queue;
    w->queue = NULL;
    bool drain = w->drain_requested;
    double grace = w->drain_grace_s;
    struct worker_msg *posted = w->posted;
    w->posted = NULL;
    pthread_mutex_unlock(&w->lock);
    worker_run_posted(posted);
    /* the queue is LIFO; reverse it so sessions start in accept order */
    struct pending *ordered = NULL;
    while (q != NULL) {
        struct pending *n = q->next;
        q->next = ordered;
        ordered = q;
        q = n;
    }
    while (ordered != NULL) {
        struct pending *p = ordered;
        ordered = p->next;
        if (p->intake) {
            if (drain) { /* never admitted: nothing to say goodbye to */
                close(p->fd);
                config_unref(p->conf);
                if (p->tls != NULL)
                    tls_ctx_unref(p->tls);
                worker_intake_dropped(&w->env);
            } else {
                intake_start(&w->env, p->fd, (struct sockaddr *)&p->peer, p->peer_len, p->conf,
                             p->listener, p->tls);
            }
            free(p);
            continue;
        }
        struct session *s = session_new(&w->env, p->fd, (struct sockaddr *)&p->peer, p->peer_len,
                                        p->conf, p->listener, p->tls);
        worker_session_adopt(&w->env, s);
        free(p);
        if (drain)
            session_shutdown(s);
    }
    if (drain)
        worker_start_drain(w, grace);
}

/* Completions posted after the loop's last wake: run them now (every session is gone, so an auth
 * job only disposes of itself). */
static void
worker_run_leftovers(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    struct worker_msg *posted = w->posted;
    w->posted = NULL;
    pthread_mutex_unlock(&w->lock);
    worker_run_posted(posted);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    ev_run(w->loop, 0);
    worker_run_leftovers(w);
    intake_drop_all(&w->env);
    cluster_link_free(w->env.cluster);
    w->env.cluster = NULL;
    dns_resolver_free(w->env.resolver);
    w->env.resolver = NULL;
    tls_thread_cleanup();
    return NULL;
}

static struct worker *
worker_new(unsigned index, struct ev_loop *loop, const struct authguard *guard)
{
    struct worker *w = xcalloc(1, sizeof(*w));
    w->index = index;
    w->loop = loop;
    w->env = (struct session_env){.loop = loop,
                                  .kick = worker_kick,
                                  .defer_free = worker_defer_finish,
                                  .done = worker_session_done,
                                  .post = worker_post,
                                  .adopt = worker_session_adopt,
                                  .intake_dropped = worker_intake_dropped,
                                  .guard = guard};
    pthread_mutex_init(&w->lock, NULL);
    ev_async_init(&w->wake, on_wake);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    ev_idle_init(&w->idle, on_idle);
    w->idle.data = w;
    ev_init(&w->drain_timer, on_drain_deadline);
    w->drain_timer.data = w;
    ev_set_userdata(w->loop, w);
    return w;
}

struct worker **
workers_start(unsigned n, const struct authguard *guard)
{
    struct worker **ws = xcalloc(n, sizeof(*ws));
    for (unsigned i = 0; i < n; i++) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
        if (loop == NULL)
            fatal("cannot create an event loop for worker %u", i);
        struct worker *w = worker_new(i, loop, guard);
        ws[i] = w;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        /* wolfSSL without SMALL_STACK needs well over 64 KB for a handshake; the static TLS
         * of the loaded libraries comes on top */
        pthread_attr_setstacksize(&attr, thread_stack_bytes(1024 * 1024));
        if (pthread_create(&w->thread, &attr, worker_main, w) != 0)
            fatal("cannot start worker thread %u", i);
        pthread_attr_destroy(&attr);
    }
    return ws;
}

static void
dispatch(struct worker **ws, unsigned n, int fd, const struct sockaddr *peer, socklen_t peer_len,
         struct config *conf, const struct config_listener *l, struct tls_ctx *tls, bool intake)
{
    struct worker *best = ws[0];
    for (unsigned i = 1; i < n; i++) {
        if (atomic_load(&ws[i]->nsessions) < atomic_load(&best->nsessions))
            best = ws[i];
    }
    struct pending *p = xcalloc(1, sizeof(*p));
    p->fd = fd;
    memcpy(&p->peer, peer, peer_len);
    p->peer_len = peer_len;
    p->conf = config_ref(conf);
    p->listener = l;
    p->tls = tls ? tls_ctx_ref(tls) : NULL;
    p->intake = intake;
    atomic_fetch_add(&best->nsessions, 1);
    pthread_mutex_lock(&best->lock);
    p->next = best->queue;
    best->queue = p;
    pthread_mutex_unlock(&best->lock);
    ev_async_send(best->loop, &best->wake);
}

void
workers_dispatch(struct worker **ws, unsigned n, int fd, const struct sockaddr *peer,
                 socklen_t peer_len, struct config *conf, const struct config_listener *l,
                 struct tls_ctx *tls)
{
    dispatch(ws, n, fd, peer, peer_len, conf, l, tls, false);
}

void
workers_dispatch_intake(struct worker **ws, unsigned n, int fd, const struct sockaddr *peer,
                        socklen_t peer_len, struct config *conf, const struct config_listener *l,
                        struct tls_ctx *tls)
{
    dispatch(ws, n, fd, peer, peer_len, conf, l, tls, true);
}

struct session_env *
worker_env(struct worker *w)
{
    return &w->env;
}

void
workers_drain(struct worker **ws, unsigned n, double grace_s)
{
    for (unsigned i = 0; i < n; i++) {
        pthread_mutex_lock(&ws[i]->lock);
        ws[i]->drain_requested = true;
        ws[i]->drain_grace_s = grace_s;
        pthread_mutex_unlock(&ws[i]->lock);
        ev_async_send(ws[i]->loop, &ws[i]->wake);
    }
}

void
workers_join(struct worker **ws, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        pthread_join(ws[i]->thread, NULL);
        /* the auth pool has stopped (auth_stop) and posts nothing more: what it posted after the
         * worker's last look is only waiting to be freed */
        worker_run_leftovers(ws[i]);
        ev_loop_destroy(ws[i]->loop);
        pthread_mutex_destroy(&ws[i]->lock);
        free(ws[i]);
    }
    free(ws);
}

/* --- a worker without a thread, for in-process tests (tests/fuzz/fuzz_session.c) --- */

struct worker *
worker_local_new(struct ev_loop *loop, const struct authguard *guard)
{
    return worker_new(0, loop, guard);
}

struct session *
worker_local_sessions(const struct worker *w)
{
    return w->sessions;
}

bool
worker_local_idle(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    bool idle = w->queue == NULL && w->posted == NULL;
    pthread_mutex_unlock(&w->lock);
    return idle && w->sessions == NULL && w->kick_list == NULL && w->dead_list == NULL;
}

void
worker_local_free(struct worker *w)
{
    MOAT_ASSERT(worker_local_idle(w));
    ev_async_stop(w->loop, &w->wake);
    ev_idle_stop(w->loop, &w->idle);
    ev_timer_stop(w->loop, &w->drain_timer);
    intake_drop_all(&w->env);
    cluster_link_free(w->env.cluster);
    dns_resolver_free(w->env.resolver);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
