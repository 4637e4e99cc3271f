/*
 * cluster.c: the fleet's shared counters in Redis (see cluster.h for the keys and semantics).
 * The only file that includes hiredis. One link per worker, attached to the worker's loop with
 * hiredis's libev adapter; it reconnects with backoff, declares itself down when a reply is
 * overdue, and logs the fleet going down and coming back once per process. Replies arrive in
 * order: a ring of send times finds the oldest one outstanding. Never blocks, never waits.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>

#include "admission.h"
#include "cluster.h"
#include "cluster_msg.h"
#include "cluster_schema.h"
#include "log.h"
#include "session.h"
#include "stats.h"
#include "worker.h"

#define RING 4096        /* commands in flight per link, at most */
#define CACHE_SLOTS 1024 /* message / recipient counts remembered per link */
#define BACKOFF_MIN_S 0.1
#define BACKOFF_MAX_S 5.0
#define TICK_S 0.1
#define ARGV_MAX 20 /* words of one command */

struct cache_slot {
    struct ratetable_key key;
    enum rate_kind kind;
    uint64_t window; /* window number; 0 = free */
    uint64_t count;
};

struct cluster_lease {
    struct cluster_link *link;
    char key[CLUSTER_KEY_MAX];
    char member[48];
    struct cluster_lease *prev, *next;
};

struct cluster_link {
    struct ev_loop *loop;
    char host[INET6_ADDRSTRLEN];
    int port;
    char *username, *password, *prefix;
    double timeout_s, connect_timeout_s, lease_s;
    redisAsyncContext *ac;
    redisAsyncContext *sub; /* the process's one subscriber to the bans channel, or NULL */
    bool subscriber;        /* this link holds it */
    char channel[CLUSTER_KEY_MAX];
    bool up;
    double connect_started;
    double backoff_s;
    ev_timer retry;
    ev_timer tick;
    double next_renew;
    double sent[RING]; /* send times of the commands in flight, oldest at head */
    size_t head, inflight;
    char sha[CLUSTER_SCRIPTS][41];
    struct cluster_lease *leases;
    struct cache_slot cache[CACHE_SLOTS];
};

enum reply_kind { REPLY_ADMIT = 0, REPLY_FAIL, REPLY_ADD, REPLY_SCRIPT, REPLY_AUTH, REPLY_OTHER };

/* One command in flight: what to do with its reply. */
struct cluster_req {
    struct cluster_link *link;
    enum reply_kind kind;
    void (*on_done)(void *arg, enum cluster_verdict v);
    void *arg;
    struct ratetable_key key;
    enum rate_kind rate_kind;
    uint64_t window;  /* messages' (admission) or the counter's window */
    uint64_t window2; /* recipients' window (admission) */
    uint32_t ban_ms;
    enum cluster_script script;
};

/* What was logged last for the process: each change is logged once, whatever the links do. */
enum logged_state { LOGGED_NOTHING = 0, LOGGED_UP, LOGGED_DOWN };
static atomic_int logged_state;
static atomic_bool subscriber_claimed; /* one link per process listens to the bans channel */
static atomic_uint_fast64_t lease_seq;
static char replica[17];
static pthread_once_t replica_once = PTHREAD_ONCE_INIT;

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
apply_message(const char *p, size_t len)
{
    struct cluster_msg m;
    if (cluster_msg_parse(p, len, &m) != 0)
        return;
    struct authguard g = session_auth_guard();
    uint64_t now = moat_now_ms();
    switch (m.kind) {
    case CMSG_FAMILIAR:
        familiar_note(g.familiar, &m.key, &m.client, now);
        return;
    case CMSG_CLIENT_BAN:
        if (g.clients != NULL)
            ratetable_ban(g.clients, &m.key, now + m.ban_ms, now);
        return;
    case CMSG_USER_BAN:
        if (g.users != NULL)
            ratetable_ban(g.users, &m.key, now + m.ban_ms, now);
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
        apply_message(payload->str, payload->len);
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
        log_msg(LOG_WARN, "cluster_down", "redis=%s:%d error=\"%s\" fallback=local", c->host,
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

static int
link_sendv(struct cluster_link *c, struct cluster_req *q, int argc, const char **argv)
{
    size_t lens[ARGV_MAX];
    MOAT_ASSERT(argc <= ARGV_MAX);
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return link_send(c, q, argc, argv, lens);
}

static struct cluster_req *
req_new(enum reply_kind kind)
{
    struct cluster_req *q = xcalloc(1, sizeof(*q));
    q->kind = kind;
    return q;
}

/* EVALSHA once the script is loaded on this connection, EVAL before. */
static int
link_eval(struct cluster_link *c, struct cluster_req *q, enum cluster_script s, int nkeys,
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
    return link_sendv(c, q, argc, argv);
}

static void lease_renew(struct cluster_lease *l, double now);

/* The first reply on a new connection: Redis answers (a TCP connection alone may reach a hung
 * server's backlog), the link is up. */
static void
link_mark_up(struct cluster_link *c)
{
    c->up = true;
    c->backoff_s = BACKOFF_MIN_S;
    stats_cluster_links(1);
    if (atomic_exchange(&logged_state, LOGGED_UP) != LOGGED_UP)
        log_msg(LOG_INFO, "cluster_up", "redis=%s:%d", c->host, c->port);
    /* sessions counted before an outage (or a Redis restart) count again */
    for (struct cluster_lease *l = c->leases; l != NULL; l = l->next)
        lease_renew(l, now_s(c));
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
        (void)link_sendv(c, req_new(REPLY_AUTH), c->username ? 3 : 2, argv);
    }
    for (int s = 0; s < CLUSTER_SCRIPTS; s++) {
        struct cluster_req *q = req_new(REPLY_SCRIPT);
        q->script = (enum cluster_script)s;
        const char *argv[3] = {"SCRIPT", "LOAD", cluster_scripts[s]};
        (void)link_sendv(c, q, 3, argv);
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
            lease_renew(l, now);
        c->next_renew = now + c->lease_s / 3;
    }
}

static struct cluster_link *
link_get(struct worker *w, const struct config *conf)
{
    struct cluster_link **slot = worker_cluster_slot(w);
    if (*slot != NULL || !cluster_enabled(conf))
        return *slot;
    pthread_once(&replica_once, replica_init);
    const struct config_cluster *cc = &conf->cluster;
    struct cluster_link *c = xcalloc(1, sizeof(*c));
    c->loop = worker_loop(w);
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
    struct worker *worker;
    struct config *conf;
};

static void
start_run(struct worker_msg *m)
{
    struct start_msg *sm = container_of(m, struct start_msg, msg);
    (void)link_get(sm->worker, sm->conf);
    config_unref(sm->conf);
    free(sm);
}

void
cluster_start(struct worker **ws, unsigned n, struct config *conf)
{
    if (!cluster_enabled(conf))
        return;
    for (unsigned i = 0; i < n; i++) {
        struct start_msg *sm = xcalloc(1, sizeof(*sm));
        sm->msg.run = start_run;
        sm->worker = ws[i];
        sm->conf = config_ref(conf);
        worker_post(ws[i], &sm->msg);
    }
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

static struct cache_slot *
cache_slot(struct cluster_link *c, const struct ratetable_key *k, enum rate_kind kind)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)kind;
    for (size_t i = 0; i < k->len; i++)
        h = (h ^ k->bytes[i]) * 0x100000001b3ull;
    return &c->cache[h % CACHE_SLOTS];
}

static void
cache_set(struct cluster_link *c, const struct ratetable_key *k, enum rate_kind kind,
          uint64_t window, uint64_t count)
{
    struct cache_slot *s = cache_slot(c, k, kind);
    s->key = *k;
    s->kind = kind;
    s->window = window;
    s->count = count;
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

static bool
reply_ok(const redisReply *r, int type)
{
    return r != NULL && r->type == type && (type != REDIS_REPLY_ARRAY || r->elements == 4);
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
    if (reply_ok(r, REDIS_REPLY_ARRAY)) {
        v = admit_verdict(element_int(r, 0));
        uint64_t now = moat_now_ms();
        long long ban = element_int(r, 1);
        struct ratetable *t = admission_table();
        if (v == CLUSTER_BANNED && ban > 0 && t != NULL)
            ratetable_ban(t, &q->key, now + (uint64_t)ban, now); /* holds if Redis goes */
        cache_set(c, &q->key, RATE_MESSAGES, q->window, (uint64_t)element_int(r, 2));
        cache_set(c, &q->key, RATE_RECIPIENTS, q->window2, (uint64_t)element_int(r, 3));
    } else if (q->on_done != NULL) {
        stats_cluster_add(STAT_CLUSTER_FALLBACKS);
    }
    if (q->on_done != NULL)
        q->on_done(q->arg, v);
}

static void
reply_fail(struct cluster_req *q, const redisReply *r)
{
    struct ratetable *t = admission_table();
    if (!reply_ok(r, REDIS_REPLY_ARRAY) || t == NULL || element_int(r, 1) == 0)
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
        reply_fail(q, r);
        break;
    case REPLY_ADD:
        if (r != NULL && r->type == REDIS_REPLY_INTEGER)
            cache_set(c, &q->key, q->rate_kind, q->window, (uint64_t)r->integer);
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

/* --- the API --- */

struct cluster_req *
cluster_admit(struct worker *w, const struct config *conf, const struct config_listener *l,
              const struct ratetable_key *k, bool dry, struct cluster_lease **lease_out,
              void (*on_done)(void *arg, enum cluster_verdict v), void *arg)
{
    *lease_out = NULL;
    struct cluster_link *c = link_get(w, conf);
    if (c == NULL)
        return NULL;
    /* the session is counted in the fleet from now on, or from the next (re)connect */
    struct cluster_lease *lease = xcalloc(1, sizeof(*lease));
    cluster_key(c->prefix, lease->key, "c", k, 0);
    snprintf(lease->member, sizeof(lease->member), "%s:%llu", replica,
             (unsigned long long)atomic_fetch_add(&lease_seq, 1));
    lease->link = c;
    lease->next = c->leases;
    if (c->leases != NULL)
        c->leases->prev = lease;
    c->leases = lease;
    *lease_out = lease;
    if (!c->up) {
        stats_cluster_add(STAT_CLUSTER_FALLBACKS);
        return NULL;
    }
    uint64_t now = moat_now_ms();
    const struct config_limits *lim = &l->limits;
    char ban[CLUSTER_KEY_MAX], rate[CLUSTER_KEY_MAX], msgs[CLUSTER_KEY_MAX], rcpts[CLUSTER_KEY_MAX];
    cluster_key(c->prefix, ban, "b", k, 0);
    cluster_key(c->prefix, rate, "r", k, cluster_window(&lim->connection_rate_per_ip, now));
    uint64_t mw = cluster_window(&lim->messages_per_client, now);
    uint64_t rw = cluster_window(&lim->recipients_per_client, now);
    cluster_key(c->prefix, msgs, "m", k, mw);
    cluster_key(c->prefix, rcpts, "n", k, rw);
    char a_now[24], a_exp[24], a_max[16], a_rc[16], a_rw[16], a_ttl[16];
    snprintf(a_now, sizeof(a_now), "%llu", (unsigned long long)now);
    snprintf(a_exp, sizeof(a_exp), "%llu", (unsigned long long)(now + conf->cluster.lease_ms));
    snprintf(a_max, sizeof(a_max), "%u", lim->max_sessions_per_ip);
    snprintf(a_rc, sizeof(a_rc), "%u", lim->connection_rate_per_ip.count);
    snprintf(a_rw, sizeof(a_rw), "%u", MOAT_MAX(lim->connection_rate_per_ip.window_ms, 1u));
    snprintf(a_ttl, sizeof(a_ttl), "%u", conf->cluster.lease_ms);
    const char *keys[5] = {ban, lease->key, rate, msgs, rcpts};
    const char *args[8] = {a_now, a_exp, lease->member, a_max, a_rc, a_rw, a_ttl, dry ? "1" : "0"};
    struct cluster_req *q = req_new(REPLY_ADMIT);
    q->on_done = on_done;
    q->arg = arg;
    q->key = *k;
    q->window = mw;
    q->window2 = rw;
    if (link_eval(c, q, CLUSTER_SCRIPT_ADMIT, 5, keys, 8, args) != 0) {
        stats_cluster_add(STAT_CLUSTER_FALLBACKS);
        return NULL;
    }
    return q;
}

void
cluster_req_cancel(struct cluster_req *r)
{
    if (r->on_done != NULL)
        stats_cluster_add(STAT_CLUSTER_FALLBACKS);
    r->on_done = NULL;
}

static void
lease_renew(struct cluster_lease *l, double now)
{
    struct cluster_link *c = l->link;
    char exp[24], ttl[16];
    snprintf(exp, sizeof(exp), "%llu",
             (unsigned long long)(moat_now_ms() + (uint64_t)(c->lease_s * 1000)));
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(c->lease_s * 1000));
    const char *keys[1] = {l->key};
    const char *args[3] = {exp, l->member, ttl};
    (void)link_eval(c, req_new(REPLY_OTHER), CLUSTER_SCRIPT_RENEW, 1, keys, 3, args);
}

void
cluster_lease_end(struct cluster_lease *l)
{
    if (l == NULL)
        return;
    struct cluster_link *c = l->link;
    if (c != NULL) {
        if (l->prev != NULL)
            l->prev->next = l->next;
        else
            c->leases = l->next;
        if (l->next != NULL)
            l->next->prev = l->prev;
        if (c->up) {
            const char *argv[3] = {"ZREM", l->key, l->member};
            (void)link_sendv(c, req_new(REPLY_OTHER), 3, argv);
        }
    }
    free(l);
}

bool
cluster_rate_allows(struct worker *w, const struct config *conf, const struct ratetable_key *k,
                    enum rate_kind kind, const struct rate *rate, uint32_t n)
{
    struct cluster_link *c = link_get(w, conf);
    if (c == NULL || rate->count == 0)
        return true;
    const struct cache_slot *s = cache_slot(c, k, kind);
    uint64_t window = cluster_window(rate, moat_now_ms());
    bool same = s->window == window && s->kind == kind && s->key.len == k->len &&
                memcmp(s->key.bytes, k->bytes, k->len) == 0;
    return !same || s->count + n <= rate->count;
}

void
cluster_rate_add(struct worker *w, const struct config *conf, const struct ratetable_key *k,
                 enum rate_kind kind, const struct rate *rate, uint32_t n)
{
    struct cluster_link *c = link_get(w, conf);
    if (c == NULL || !c->up || rate->count == 0)
        return;
    uint64_t window = cluster_window(rate, moat_now_ms());
    char key[CLUSTER_KEY_MAX], a_n[16], a_ttl[16];
    cluster_key(c->prefix, key, kind == RATE_MESSAGES ? "m" : "n", k, window);
    snprintf(a_n, sizeof(a_n), "%u", n);
    snprintf(a_ttl, sizeof(a_ttl), "%u", rate->window_ms);
    const char *keys[1] = {key};
    const char *args[2] = {a_n, a_ttl};
    struct cluster_req *q = req_new(REPLY_ADD);
    q->key = *k;
    q->rate_kind = kind;
    q->window = window;
    (void)link_eval(c, q, CLUSTER_SCRIPT_ADD, 1, keys, 2, args);
}

void
cluster_auth_failure(struct worker *w, const struct config *conf, const struct config_auth *a,
                     const struct ratetable_key *k, const char *user, size_t user_len,
                     bool familiar)
{
    struct cluster_link *c = link_get(w, conf);
    if (c == NULL || !c->up)
        return;
    uint64_t now = moat_now_ms();
    struct ratetable_key uk = {0};
    bool count_user = user != NULL && user_len > 0 && !familiar;
    if (count_user)
        ratetable_key_user(&uk, user, user_len);
    char f[CLUSTER_KEY_MAX], b[CLUSTER_KEY_MAX], uf[CLUSTER_KEY_MAX], ub[CLUSTER_KEY_MAX];
    cluster_key(c->prefix, f, "f", k, cluster_window(&a->ban_ip, now));
    cluster_key(c->prefix, b, "b", k, 0);
    if (count_user) {
        cluster_key(c->prefix, uf, "u", &uk, cluster_window(&a->ban_user, now));
        cluster_key(c->prefix, ub, "k", &uk, 0);
    } else {
        snprintf(uf, sizeof(uf), "%su:none", c->prefix);
        snprintf(ub, sizeof(ub), "%sk:none", c->prefix);
    }
    char a1[16], a2[16], a3[16], a4[16], a5[16];
    snprintf(a1, sizeof(a1), "%u", a->ban_ip.count);
    snprintf(a2, sizeof(a2), "%u", MOAT_MAX(a->ban_ip.window_ms, 1u));
    snprintf(a3, sizeof(a3), "%u", a->ban_time_ms);
    snprintf(a4, sizeof(a4), "%u", a->ban_user.count);
    snprintf(a5, sizeof(a5), "%u", MOAT_MAX(a->ban_user.window_ms, 1u));
    char kh[CLUSTER_KEY_HEX], uh[CLUSTER_KEY_HEX];
    cluster_key_hex(k, kh);
    cluster_key_hex(&uk, uh);
    const char *keys[4] = {f, b, uf, ub};
    const char *args[9] = {a1, a2, a3, a4, a5, count_user ? "1" : "0", c->channel, kh, uh};
    struct cluster_req *q = req_new(REPLY_FAIL);
    q->key = *k;
    q->ban_ms = a->ban_time_ms;
    (void)link_eval(c, q, CLUSTER_SCRIPT_FAIL, 4, keys, 9, args);
}

void
cluster_login(struct worker *w, const struct config *conf, const struct ratetable_key *k,
              const char *user, size_t user_len)
{
    struct cluster_link *c = link_get(w, conf);
    if (c == NULL || !c->up || user == NULL || user_len == 0)
        return;
    struct cluster_msg m = {.kind = CMSG_FAMILIAR, .client = *k};
    ratetable_key_user(&m.key, user, user_len);
    char msg[CLUSTER_MSG_MAX];
    cluster_msg_format(&m, msg, sizeof(msg));
    const char *argv[3] = {"PUBLISH", c->channel, msg};
    (void)link_sendv(c, req_new(REPLY_OTHER), 3, argv);
}
