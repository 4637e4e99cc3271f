/*
 * intake.c: a connection between accept and its session, on the worker that will own it, for
 * listeners behind a balancer or in a fleet. Reads the PROXY header (bounded by PROXY_PARSE_PEEK
 * bytes and [timeouts] proxy_header; nothing past the header is consumed, so a TLS ClientHello or
 * an early SMTP command stays in the socket), then runs the client part of admission on the real
 * address, then asks the fleet's counters for at most [cluster] timeout. It never blocks and
 * never reads more than the header: anything malformed, late or untrusted is closed silently.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admission.h"
#include "cluster.h"
#include "intake.h"
#include "listener.h"
#include "log.h"
#include "proxy_parse.h"
#include "session.h"
#include "session_env.h"
#include "tls.h"

struct intake {
    struct session_env *env; /* of the worker that took the connection over */
    int fd;
    struct sockaddr_storage peer; /* the connection's own peer: the balancer */
    socklen_t peer_len;
    struct sockaddr_storage client; /* the real client */
    socklen_t client_len;
    struct config *conf;
    const struct config_listener *listener;
    struct tls_ctx *tls;
    ev_io io;
    ev_timer timer;
    bool counted;            /* admitted locally (admission_check_client): end it when refused */
    struct cluster_req *req; /* waiting for the fleet's answer */
    struct cluster_lease *lease;
    size_t hdr_len;
    unsigned char hdr[PROXY_PARSE_PEEK];
    struct intake *prev, *next;
};

bool
intake_wanted(const struct config *conf, const struct config_listener *l)
{
    return l->proxy_protocol != PROXY_ACCEPT_OFF || cluster_enabled(conf);
}

enum admission_verdict
intake_check_accept(const struct config *conf, const struct config_listener *l,
                    const struct sockaddr *peer)
{
    if (l->proxy_protocol != PROXY_ACCEPT_OFF && !cidr_list_match(&l->proxy_trusted, peer))
        return ADMIT_PROXY_UNTRUSTED;
    return admission_check_accept(conf, l);
}

static void
intake_unlink(struct intake *in)
{
    struct intake **head = &in->env->intakes;
    if (in->prev != NULL)
        in->prev->next = in->next;
    else
        *head = in->next;
    if (in->next != NULL)
        in->next->prev = in->prev;
    struct ev_loop *loop = in->env->loop;
    ev_io_stop(loop, &in->io);
    ev_timer_stop(loop, &in->timer);
    if (in->req != NULL)
        cluster_req_cancel(in->req);
    in->req = NULL;
}

/* Not admitted: the connection goes, with the protocol's refusal when one is due. */
static void
intake_drop(struct intake *in, enum admission_verdict v)
{
    intake_unlink(in);
    if (in->counted)
        admission_session_end(in->listener, (const struct sockaddr *)&in->client);
    cluster_lease_end(in->lease);
    if (v != ADMIT_OK)
        listener_refuse(in->fd, in->conf, in->listener,
                        (const struct sockaddr *)(in->client_len ? &in->client : &in->peer), v,
                        NULL);
    else
        close(in->fd);
    config_unref(in->conf);
    if (in->tls != NULL)
        tls_ctx_unref(in->tls);
    in->env->intake_dropped(in->env);
    free(in);
}

/* Admitted: the connection becomes a session of the worker (uncounted: a balancer's own
 * connection, in no client's count). */
static void
intake_session(struct intake *in, bool uncounted)
{
    intake_unlink(in);
    struct session *s = session_new(in->env, in->fd, (const struct sockaddr *)&in->client,
                                    in->client_len, in->conf, in->listener, in->tls);
    s->lease = in->lease;
    s->admission_uncounted = uncounted;
    in->env->adopt(in->env, s);
    free(in);
}

static enum admission_verdict
from_cluster(enum cluster_verdict v)
{
    switch (v) {
    case CLUSTER_OK:
    case CLUSTER_UNKNOWN:
        return ADMIT_OK;
    case CLUSTER_PER_IP:
        return ADMIT_PER_IP;
    case CLUSTER_RATE:
        return ADMIT_RATE;
    case CLUSTER_BANNED:
        return ADMIT_BANNED;
    }
    return ADMIT_OK;
}

static void
on_cluster(void *arg, enum cluster_verdict cv)
{
    struct intake *in = arg;
    in->req = NULL;
    enum admission_verdict v = from_cluster(cv);
    if (v == ADMIT_OK) {
        intake_session(in, false);
        return;
    }
    if (in->listener->limits.mode == MODE_LOG) {
        char addr[CONFVAL_ADDR_STRLEN];
        log_msg(LOG_INFO, EV_WOULD_REFUSE, "listener=%s client=%s reason=%s mode=log",
                in->listener->name,
                confval_addr_format((const struct sockaddr *)&in->client, addr, sizeof(addr)),
                admission_verdict_name(v));
        intake_session(in, false);
        return;
    }
    intake_drop(in, v);
}

/* The client is known: the same admission as at accept, then the fleet's view. */
static void
intake_admit(struct intake *in)
{
    const struct sockaddr *client = (const struct sockaddr *)&in->client;
    enum admission_verdict v = admission_check_client(in->conf, in->listener, client);
    if (v != ADMIT_OK) {
        intake_drop(in, v);
        return;
    }
    in->counted = true;
    if (admission_exempt(in->listener, client) || !cluster_enabled(in->conf)) {
        intake_session(in, false);
        return;
    }
    struct ratetable_key k;
    admission_client_key(&k, in->listener, client);
    in->req = cluster_admit(in->env, in->conf, in->listener, &k,
                            in->listener->limits.mode == MODE_LOG, &in->lease, on_cluster, in);
    if (in->req == NULL) {
        intake_session(in, false); /* no link: the local decision stands */
        return;
    }
    struct ev_loop *loop = in->env->loop;
    ev_timer_stop(loop, &in->timer);
    ev_timer_set(&in->timer, in->conf->cluster.timeout_ms / 1000.0, 0.);
    ev_timer_start(loop, &in->timer);
}

static void
log_header(const struct intake *in, const struct proxy_header *h)
{
    struct log_line line;
    log_begin(&line, LOG_DEBUG, EV_PROXY_HEADER);
    if (line.skip)
        return;
    char a[CONFVAL_ADDR_STRLEN], b[CONFVAL_ADDR_STRLEN];
    log_kv(&line, "listener", "%s", in->listener->name);
    log_kv(&line, "client", "%s",
           confval_addr_format((const struct sockaddr *)&in->client, a, sizeof(a)));
    log_kv(&line, "balancer", "%s",
           confval_addr_format((const struct sockaddr *)&in->peer, b, sizeof(b)));
    log_kv(&line, "version", "%s", proxy_version_name(h->version));
    if (h->local)
        log_kv(&line, "command", "local");
    if (h->ssl)
        log_kv(&line, "balancer_tls", "%s", h->ssl_version[0] ? h->ssl_version : "yes");
    if (h->authority[0] != '\0')
        log_kv_str(&line, "sni", h->authority, strlen(h->authority));
    if (h->alpn[0] != '\0')
        log_kv_str(&line, "alpn", h->alpn, strlen(h->alpn));
    log_end(&line);
}

static enum proxy_version
accepted_version(const struct config_listener *l)
{
    switch (l->proxy_protocol) {
    case PROXY_ACCEPT_V1:
        return PROXY_VERSION_V1;
    case PROXY_ACCEPT_V2:
        return PROXY_VERSION_V2;
    case PROXY_ACCEPT_OFF:
    case PROXY_ACCEPT_ANY:
        break;
    }
    return PROXY_VERSION_ANY;
}

/* Consume exactly n bytes already seen with MSG_PEEK. */
static int
consume(int fd, size_t n)
{
    unsigned char sink[PROXY_PARSE_PEEK];
    ssize_t r;
    do
        r = recv(fd, sink, n, 0);
    while (r < 0 && errno == EINTR);
    return r == (ssize_t)n ? 0 : -1;
}

static void
on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct intake *in = w->data;
    ssize_t got = recv(in->fd, in->hdr + in->hdr_len, sizeof(in->hdr) - in->hdr_len, MSG_PEEK);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) {
        intake_drop(in, ADMIT_OK); /* gone before its header: nothing to say */
        return;
    }
    struct proxy_header h;
    size_t used;
    size_t have = in->hdr_len + (size_t)got;
    switch (proxy_parse(in->hdr, have, accepted_version(in->listener), &h, &used)) {
    case PP_BAD:
        intake_drop(in, ADMIT_PROXY_HEADER);
        return;
    case PP_MORE:
        /* every byte seen belongs to the header: take them, wait for the rest */
        if (consume(in->fd, (size_t)got) != 0 || have == sizeof(in->hdr)) {
            intake_drop(in, ADMIT_PROXY_HEADER);
            return;
        }
        in->hdr_len = have;
        return;
    case PP_OK:
        break;
    }
    if (consume(in->fd, used - in->hdr_len) != 0) {
        intake_drop(in, ADMIT_PROXY_HEADER);
        return;
    }
    ev_io_stop(loop, &in->io);
    if (h.local) {
        /* the balancer's own connection (a health check): no client to count */
        memcpy(&in->client, &in->peer, in->peer_len);
        in->client_len = in->peer_len;
        log_header(in, &h);
        admission_count_uncounted();
        intake_session(in, true);
        return;
    }
    in->client = h.src;
    in->client_len = h.src_len;
    log_header(in, &h);
    intake_admit(in);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct intake *in = t->data;
    if (in->req != NULL) {
        /* the fleet is slow: the local decision stands (cluster.c counts the fallback) */
        cluster_req_cancel(in->req);
        in->req = NULL;
        intake_session(in, false);
        return;
    }
    intake_drop(in, ADMIT_PROXY_HEADER);
}

void
intake_start(struct session_env *e, int fd, const struct sockaddr *peer, socklen_t peer_len,
             struct config *conf, const struct config_listener *l, struct tls_ctx *tls)
{
    struct intake *in = xcalloc(1, sizeof(*in));
    in->env = e;
    in->fd = fd;
    memcpy(&in->peer, peer, peer_len);
    in->peer_len = peer_len;
    in->conf = conf;
    in->listener = l;
    in->tls = tls;
    struct intake **head = &e->intakes;
    in->next = *head;
    if (*head != NULL)
        (*head)->prev = in;
    *head = in;
    struct ev_loop *loop = e->loop;
    ev_io_init(&in->io, on_readable, fd, EV_READ);
    in->io.data = in;
    ev_init(&in->timer, on_timer);
    in->timer.data = in;
    if (l->proxy_protocol == PROXY_ACCEPT_OFF) {
        memcpy(&in->client, peer, peer_len);
        in->client_len = peer_len;
        intake_admit(in);
        return;
    }
    ev_timer_set(&in->timer, l->timeouts.proxy_header_ms / 1000.0, 0.);
    ev_timer_start(loop, &in->timer);
    ev_io_start(loop, &in->io);
}

void
intake_drop_all(struct session_env *e)
{
    struct intake **head = &e->intakes;
    while (*head != NULL)
        intake_drop(*head, ADMIT_OK);
}
