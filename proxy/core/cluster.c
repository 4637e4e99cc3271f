/*
 * cluster.c: the fleet's shared counters in Redis (see cluster.h for the keys and semantics):
 * the link itself. With cluster_ops.c (the decisions asked of it, through cluster_int.h), the
 * only file that sees hiredis. One link per worker, attached to the worker's loop with hiredis's
 * libev adapter; it reconnects with backoff, declares itself down when a reply is overdue, and
 * logs the fleet going down and coming back once per process. Replies arrive in order: a ring
 * of send times finds the oldest one outstanding. Never blocks, never waits.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>

#include "authguard.h"
#include "cluster_int.h"
#include "cluster_msg.h"
#include "log.h"
#include "session_env.h"
#include "stats.h"

/* What was logged last for the process: each change is logged once, whatever the links do. */
enum logged_state { LOGGED_NOTHING = 0, LOGGED_UP, LOGGED_DOWN };
static atomic_int logged_state;
static atomic_bool subscriber_claimed; /* one link per process listens to the bans channel */
static char replica[17];
static pthread_once_t replica_once = PTHREAD_ONCE_INIT;

const char *
cluster_replica(void)
{
    return replica;
}

bool
cluster_enabled(const struct config *conf)
{
    return conf->cluster.redis_addr_len > 0;
}

static void
replica_init(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = moat_now_ms() ^ (uint64_t)(uintptr_t)&r;
    snprintf(replica, sizeof(replica), "%016llx", (unsigned long long)r);
}

static double
now_s(const struct cluster_link *c)
{
    return ev_now(c->loop);
}

/* --- bans and familiar addresses, published to every moat --- */

static void
apply_message(const struct cluster_link *c, const char *p, size_t len)
{
    struct cluster_msg m;
    if (cluster_msg_parse(p, len, &m) != 0 || c->guard == NULL)
        return;
    const struct authguard *g = c->guard;
    uint64_t now = moat_now_ms();
    switch (m.kind) {
    case CMSG_FAMILIAR:
        if (g->familiar != NULL)
            familiar_note(g->familiar, &m.key, &m.client, now);
        return;
    case CMSG_CLIENT_BAN:
        if (g->clients != NULL)
            ratetable_ban(g->clients, &m.key, now + m.ban_ms, now);
        return;
    case CMSG_USER_BAN:
        if (g->users != NULL)
            ratetable_ban(g->users, &m.key, now + m.ban_ms, now);
        return;
    }
}

static void
on_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    const redisReply *r = reply;
    if (ac->data == NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    const redisReply *what = r->element[0], *payload = r->element[2];
    if (what->type == REDIS_REPLY_STRING && strcmp(what->str, "message") == 0 &&
        payload->type == REDIS_REPLY_STRING)
        apply_message(ac->data, payload->str, payload->len);
}

static void
on_sub_disconnect(const redisAsyncContext *ac, int status)
{
    struct cluster_link *c = ac->data;
    if (c != NULL && c->sub == ac)
        c->sub = NULL; /* hiredis frees it; the tick opens another */
}

static void
on_sub_connect(const redisAsyncContext *ac, int status)
{
    struct cluster_link *c = ac->data;
    if (c != NULL && c->sub == ac && status != REDIS_OK)
        c->sub = NULL; /* hiredis frees it */
}

static void
sub_drop(struct cluster_link *c)
{
    redisAsyncContext *ac = c->sub;
    c->sub = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

static void
sub_connect(struct cluster_link *c)
{
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
    if (ac == NULL)
        return;
    if (ac->err) {
        redisAsyncFree(ac);
        return;
    }
    ac->data = c;
    c->sub = ac;
    redisLibevAttach(c->loop, ac);
    redisAsyncSetConnectCallback(ac, on_sub_connect);
    redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
    if (c->password != NULL) {
        const char *argv[3] = {"AUTH", c->username ? c->username : c->password, c->password};
        size_t lens[3] = {strlen(argv[0]), strlen(argv[1]), strlen(argv[2])};
        redisAsyncCommandArgv(ac, NULL, NULL, c->username ? 3 : 2, argv, lens);
    }
    const char *argv[2] = {"SUBSCRIBE", c->channel};
    size_t lens[2] = {9, strlen(c->channel)};
    redisAsyncCommandArgv(ac, on_message, NULL, 2, argv, lens);
}

/* --- the connection --- */

static void link_connect(struct cluster_link *c);

static void
link_went_down(struct cluster_link *c, const char *why)
{
    if (c->up)
        stats_cluster_links(-1);
    c->up = false;
    sub_drop(c);
    c->head = c->inflight = 0;
    memset(c->sha, 0, sizeof(c->sha));
    if (atomic_exchange(&logged_state, LOGGED_DOWN) != LOGGED_DOWN)
        log_msg(LOG_WARN, EV_CLUSTER_DOWN, "redis=%s:%d error=\"%s\" fallback=local", c->host,
                c->port, why);
    stats_cluster_add(STAT_CLUSTER_ERRORS);
    ev_timer_set(&c->retry, c->backoff_s, 0.);
    ev_timer_start(c->loop, &c->retry);
    c->backoff_s = MOAT_MIN(c->backoff_s * 2, BACKOFF_MAX_S);
}

/* Drop the context (its callbacks run with no reply) and try again later. */
static void
link_reset(struct cluster_link *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    link_went_down(c, why);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    struct cluster_link *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    c->ac = NULL; /* hiredis frees it */
    link_went_down(c, ac->errstr[0] ? ac->errstr : "disconnected");
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

static int
link_send(struct cluster_link *c, struct cluster_req *q, int argc, const char **argv,
          const size_t *lens)
{
    if (c->ac == NULL || c->inflight == RING) {
        free(q);
        return -1;
    }
    q->link = c;
    if (redisAsyncCommandArgv(c->ac, on_reply, q, argc, argv, lens) != REDIS_OK) {
        free(q);
        return -1;
    }
    c->sent[(c->head + c->inflight) % RING] = now_s(c);
    c->inflight++;
    stats_cluster_add(STAT_CLUSTER_REQUESTS);
    return 0;
}

int
cluster_link_sendv(struct cluster_link *c, struct cluster_req *q, int argc, const char **argv)
{
    size_t lens[ARGV_MAX];
    MOAT_ASSERT(argc <= ARGV_MAX);
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return link_send(c, q, argc, argv, lens);
}

struct cluster_req *
cluster_req_new(enum reply_kind kind)
{
    struct cluster_req *q = xcalloc(1, sizeof(*q));
    q->kind = kind;
    return q;
}

/* EVALSHA once the script is loaded on this connection, EVAL before. */
int
cluster_link_eval(struct cluster_link *c, struct cluster_req *q, enum cluster_script s, int nkeys,
                  const char **keys, int nargs, const char **args)
{
    const char *argv[ARGV_MAX];
    char nk[4];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    int argc = 0;
    MOAT_ASSERT(3 + nkeys + nargs <= ARGV_MAX);
    bool sha = c->sha[s][0] != '\0';
    argv[argc++] = sha ? "EVALSHA" : "EVAL";
    argv[argc++] = sha ? c->sha[s] : cluster_scripts[s];
    argv[argc++] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[argc++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[argc++] = args[i];
    return cluster_link_sendv(c, q, argc, argv);
}

/* The first reply on a new connection: Redis answers (a TCP connection alone may reach a hung
 * server's backlog), the link is up. */
static void
link_mark_up(struct cluster_link *c)
{
    c->up = true;
    c->backoff_s = BACKOFF_MIN_S;
    stats_cluster_links(1);
    if (atomic_exchange(&logged_state, LOGGED_UP) != LOGGED_UP)
        log_msg(LOG_INFO, EV_CLUSTER_UP, "redis=%s:%d", c->host, c->port);
    /* sessions counted before an outage (or a Redis restart) count again */
    for (struct cluster_lease *l = c->leases; l != NULL; l = l->next)
        cluster_lease_renew(l, now_s(c));
    c->next_renew = now_s(c) + c->lease_s / 3;
    if (c->subscriber && c->sub == NULL)
        sub_connect(c);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
    struct cluster_link *c = ac->data;
    if (c == NULL || c->ac != ac || status == REDIS_OK)
        return;   /* up at the first reply (link_mark_up) */
    c->ac = NULL; /* hiredis frees it */
    link_went_down(c, ac->errstr[0] ? ac->errstr : "connect failed");
}

static void
link_connect(struct cluster_link *c)
{
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
    if (ac == NULL) {
        link_went_down(c, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        link_went_down(c, why);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->connect_started = now_s(c);
    redisLibevAttach(c->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued until connected; AUTH first, the scripts next, in this order on the wire */
    if (c->password != NULL) {
        const char *argv[3] = {"AUTH", c->username ? c->username : c->password, c->password};
        (void)cluster_link_sendv(c, cluster_req_new(REPLY_AUTH), c->username ? 3 : 2, argv);
    }
    for (int s = 0; s < CLUSTER_SCRIPTS; s++) {
        struct cluster_req *q = cluster_req_new(REPLY_SCRIPT);
        q->script = (enum cluster_script)s;
        const char *argv[3] = {"SCRIPT", "LOAD", cluster_scripts[s]};
        (void)cluster_link_sendv(c, q, 3, argv);
    }
}

static void
on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct cluster_link *c = t->data;
    if (c->ac == NULL)
        link_connect(c);
}

/* Connect timeout, overdue replies, lease renewal. */
static void
on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct cluster_link *c = t->data;
    double now = now_s(c);
    if (c->ac != NULL && !c->up && now - c->connect_started > c->connect_timeout_s) {
        link_reset(c, "connect timeout");
        return;
    }
    double overdue = MOAT_MAX(c->connect_timeout_s, 4 * c->timeout_s);
    if (c->up && c->inflight > 0 && now - c->sent[c->head] > overdue) {
        link_reset(c, "reply timeout");
        return;
    }
    if (c->up && c->subscriber && c->sub == NULL)
        sub_connect(c);
    if (c->up && now >= c->next_renew) {
        for (struct cluster_lease *l = c->leases; l != NULL; l = l->next)
            cluster_lease_renew(l, now);
        c->next_renew = now + c->lease_s / 3;
    }
}

struct cluster_link *
cluster_link_get(struct session_env *e, const struct config *conf)
{
    struct cluster_link **slot = &e->cluster;
    if (*slot != NULL || !cluster_enabled(conf))
        return *slot;
    pthread_once(&replica_once, replica_init);
    const struct config_cluster *cc = &conf->cluster;
    struct cluster_link *c = xcalloc(1, sizeof(*c));
    c->loop = e->loop;
    c->guard = e->guard;
    unsigned port = 0;
    const struct sockaddr *sa = (const struct sockaddr *)&cc->redis_addr;
    if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->host,
                  sizeof(c->host));
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->host, sizeof(c->host));
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    }
    c->port = (int)port;
    c->username = cc->username ? xstrdup(cc->username) : NULL;
    c->password = cc->password ? xstrdup(cc->password) : NULL;
    c->prefix = xstrdup(cc->prefix ? cc->prefix : "");
    c->timeout_s = cc->timeout_ms / 1000.0;
    c->connect_timeout_s = cc->connect_timeout_ms / 1000.0;
    c->lease_s = cc->lease_ms / 1000.0;
    c->backoff_s = BACKOFF_MIN_S;
    snprintf(c->channel, sizeof(c->channel), "%sbans", c->prefix);
    bool no = false;
    c->subscriber = atomic_compare_exchange_strong(&subscriber_claimed, &no, true);
    ev_init(&c->retry, on_retry);
    c->retry.data = c;
    ev_timer_init(&c->tick, on_tick, TICK_S, TICK_S);
    c->tick.data = c;
    ev_timer_start(c->loop, &c->tick);
    stats_cluster_enable();
    *slot = c;
    link_connect(c);
    return c;
}

struct start_msg {
    struct worker_msg msg;
    struct session_env *env;
    struct config *conf;
};

static void
start_run(struct worker_msg *m)
{
    struct start_msg *sm = container_of(m, struct start_msg, msg);
    (void)cluster_link_get(sm->env, sm->conf);
    config_unref(sm->conf);
    free(sm);
}

void
cluster_start(struct session_env *e, struct config *conf)
{
    if (!cluster_enabled(conf))
        return;
    struct start_msg *sm = xcalloc(1, sizeof(*sm));
    sm->msg.run = start_run;
    sm->env = e;
    sm->conf = config_ref(conf);
    e->post(e, &sm->msg);
}

void
cluster_link_free(struct cluster_link *c)
{
    if (c == NULL)
        return;
    ev_timer_stop(c->loop, &c->tick);
    ev_timer_stop(c->loop, &c->retry);
    sub_drop(c);
    if (c->subscriber)
        atomic_store(&subscriber_claimed, false);
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac); /* callbacks run with no reply; they still see c */
    }
    if (c->up)
        stats_cluster_links(-1);
    while (c->leases != NULL) {
        struct cluster_lease *l = c->leases;
        c->leases = l->next;
        l->link = NULL; /* the session frees it */
        l->prev = l->next = NULL;
    }
    free(c->username);
    if (c->password != NULL)
        explicit_bzero(c->password, strlen(c->password));
    free(c->password);
    free(c->prefix);
    free(c);
}

/* --- the per-link cache of the fleet's message / recipient counts --- */

struct cache_slot *
cluster_cache_slot(struct cluster_link *c, const struct ratetable_key *k, enum rate_kind kind)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)kind;
    for (size_t i = 0; i < k->len; i++)
        h = (h ^ k->bytes[i]) * 0x100000001b3ull;
    return &c->cache[h % CACHE_SLOTS];
}

static void
cache_set(struct cluster_link *c, const struct ratetable_key *k, enum rate_kind kind,
          uint64_t window, uint64_t count, uint64_t prev)
{
    struct cache_slot *s = cluster_cache_slot(c, k, kind);
    s->key = *k;
    s->kind = kind;
    s->window = window;
    s->count = count;
    s->prev = prev;
}

/* --- replies --- */

static long long
element_int(const redisReply *r, size_t i)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return 0;
    const redisReply *e = r->element[i];
    return e->type == REDIS_REPLY_INTEGER ? e->integer : 0;
}

/* A script's answer: an array of n elements. */
static bool
reply_array(const redisReply *r, size_t n)
{
    return r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == n;
}

static enum cluster_verdict
admit_verdict(long long v)
{
    switch (v) {
    case 0:
        return CLUSTER_OK;
    case 1:
        return CLUSTER_PER_IP;
    case 2:
        return CLUSTER_RATE;
    case 3:
        return CLUSTER_BANNED;
    }
    return CLUSTER_UNKNOWN;
}

static void
reply_admit(struct cluster_link *c, struct cluster_req *q, const redisReply *r)
{
    enum cluster_verdict v = CLUSTER_UNKNOWN;
    if (reply_array(r, 6)) {
        v = admit_verdict(element_int(r, 0));
        uint64_t now = moat_now_ms();
        long long ban = element_int(r, 1);
        struct ratetable *t = c->guard != NULL ? c->guard->clients : NULL;
        if (v == CLUSTER_BANNED && ban > 0 && t != NULL)
            ratetable_ban(t, &q->key, now + (uint64_t)ban, now); /* holds if Redis goes */
        cache_set(c, &q->key, RATE_MESSAGES, q->window, (uint64_t)element_int(r, 2),
                  (uint64_t)element_int(r, 3));
        cache_set(c, &q->key, RATE_RECIPIENTS, q->window2, (uint64_t)element_int(r, 4),
                  (uint64_t)element_int(r, 5));
    } else if (q->on_done != NULL) {
        stats_cluster_add(STAT_CLUSTER_FALLBACKS);
    }
    if (q->on_done != NULL)
        q->on_done(q->arg, v);
}

static void
reply_fail(struct cluster_link *c, struct cluster_req *q, const redisReply *r)
{
    struct ratetable *t = c->guard != NULL ? c->guard->clients : NULL;
    if (!reply_array(r, 4) || t == NULL || element_int(r, 1) == 0)
        return;
    uint64_t now = moat_now_ms();
    ratetable_ban(t, &q->key, now + q->ban_ms, now);
}

static void
on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct cluster_req *q = privdata;
    struct cluster_link *c = q->link;
    const redisReply *r = reply;
    if (ac->data == c && c->inflight > 0) {
        c->head = (c->head + 1) % RING;
        c->inflight--;
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        stats_cluster_add(STAT_CLUSTER_ERRORS);
        if (strncmp(r->str, "NOSCRIPT", 8) == 0)
            memset(c->sha, 0, sizeof(c->sha)); /* flushed: EVAL again, then reload */
    }
    switch (q->kind) {
    case REPLY_ADMIT:
        reply_admit(c, q, r);
        break;
    case REPLY_FAIL:
        reply_fail(c, q, r);
        break;
    case REPLY_ADD:
        if (reply_array(r, 2))
            cache_set(c, &q->key, q->rate_kind, q->window, (uint64_t)element_int(r, 0),
                      (uint64_t)element_int(r, 1));
        break;
    case REPLY_SCRIPT:
        if (r != NULL && r->type == REDIS_REPLY_STRING && r->len == 40 && ac->data == c) {
            memcpy(c->sha[q->script], r->str, 41);
            if (!c->up && c->ac == ac)
                link_mark_up(c);
        }
        break;
    case REPLY_AUTH:
        if (r != NULL && r->type == REDIS_REPLY_ERROR && ac->data == c && c->ac == ac)
            link_reset(c, "AUTH refused"); /* hiredis frees the context after this callback */
        break;
    case REPLY_OTHER:
        break;
    }
    free(q);
}
