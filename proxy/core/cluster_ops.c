/*
 * cluster_ops.c: the decisions a worker asks of its Redis link (cluster.c): a client's admission
 * and its session's lease, message and recipient rates, auth failures and logins. Each is one
 * command or script; none waits: answers come back through cluster.c's replies.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"
#include "cluster_msg.h"
#include "stats.h"

static atomic_uint_fast64_t lease_seq;

struct cluster_req *
cluster_admit(struct session_env *e, const struct config *conf, const struct config_listener *l,
              const struct ratetable_key *k, bool dry, struct cluster_lease **lease_out,
              void (*on_done)(void *arg, enum cluster_verdict v), void *arg)
{
    *lease_out = NULL;
    struct cluster_link *c = cluster_link_get(e, conf);
    if (c == NULL)
        return NULL;
    /* the session is counted in the fleet from now on, or from the next (re)connect */
    struct cluster_lease *lease = xcalloc(1, sizeof(*lease));
    cluster_key(c->prefix, lease->key, "c", k, 0);
    snprintf(lease->member, sizeof(lease->member), "%s:%llu", cluster_replica(),
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
    struct cluster_req *q = cluster_req_new(REPLY_ADMIT);
    q->on_done = on_done;
    q->arg = arg;
    q->key = *k;
    q->window = mw;
    q->window2 = rw;
    if (cluster_link_eval(c, q, CLUSTER_SCRIPT_ADMIT, 5, keys, 8, args) != 0) {
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

void
cluster_lease_renew(struct cluster_lease *l, double now)
{
    struct cluster_link *c = l->link;
    char exp[24], ttl[16];
    snprintf(exp, sizeof(exp), "%llu",
             (unsigned long long)(moat_now_ms() + (uint64_t)(c->lease_s * 1000)));
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(c->lease_s * 1000));
    const char *keys[1] = {l->key};
    const char *args[3] = {exp, l->member, ttl};
    (void)cluster_link_eval(c, cluster_req_new(REPLY_OTHER), CLUSTER_SCRIPT_RENEW, 1, keys, 3,
                            args);
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
            (void)cluster_link_sendv(c, cluster_req_new(REPLY_OTHER), 3, argv);
        }
    }
    free(l);
}

bool
cluster_rate_allows(struct session_env *e, const struct config *conf, const struct ratetable_key *k,
                    enum rate_kind kind, const struct rate *rate, uint32_t n)
{
    struct cluster_link *c = cluster_link_get(e, conf);
    if (c == NULL || rate->count == 0)
        return true;
    const struct cache_slot *s = cluster_cache_slot(c, k, kind);
    uint64_t window = cluster_window(rate, moat_now_ms());
    bool same = s->window == window && s->kind == kind && s->key.len == k->len &&
                memcmp(s->key.bytes, k->bytes, k->len) == 0;
    return !same || s->count + n <= rate->count;
}

void
cluster_rate_add(struct session_env *e, const struct config *conf, const struct ratetable_key *k,
                 enum rate_kind kind, const struct rate *rate, uint32_t n)
{
    struct cluster_link *c = cluster_link_get(e, conf);
    if (c == NULL || !c->up || rate->count == 0)
        return;
    uint64_t window = cluster_window(rate, moat_now_ms());
    char key[CLUSTER_KEY_MAX], a_n[16], a_ttl[16];
    cluster_key(c->prefix, key, kind == RATE_MESSAGES ? "m" : "n", k, window);
    snprintf(a_n, sizeof(a_n), "%u", n);
    snprintf(a_ttl, sizeof(a_ttl), "%u", rate->window_ms);
    const char *keys[1] = {key};
    const char *args[2] = {a_n, a_ttl};
    struct cluster_req *q = cluster_req_new(REPLY_ADD);
    q->key = *k;
    q->rate_kind = kind;
    q->window = window;
    (void)cluster_link_eval(c, q, CLUSTER_SCRIPT_ADD, 1, keys, 2, args);
}

void
cluster_auth_failure(struct session_env *e, const struct config *conf, const struct config_auth *a,
                     const struct ratetable_key *k, const char *user, size_t user_len,
                     bool familiar)
{
    struct cluster_link *c = cluster_link_get(e, conf);
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
    struct cluster_req *q = cluster_req_new(REPLY_FAIL);
    q->key = *k;
    q->ban_ms = a->ban_time_ms;
    (void)cluster_link_eval(c, q, CLUSTER_SCRIPT_FAIL, 4, keys, 9, args);
}

void
cluster_login(struct session_env *e, const struct config *conf, const struct ratetable_key *k,
              const char *user, size_t user_len)
{
    struct cluster_link *c = cluster_link_get(e, conf);
    if (c == NULL || !c->up || user == NULL || user_len == 0)
        return;
    struct cluster_msg m = {.kind = CMSG_FAMILIAR, .client = *k};
    ratetable_key_user(&m.key, user, user_len);
    char msg[CLUSTER_MSG_MAX];
    cluster_msg_format(&m, msg, sizeof(msg));
    const char *argv[3] = {"PUBLISH", c->channel, msg};
    (void)cluster_link_sendv(c, cluster_req_new(REPLY_OTHER), 3, argv);
}
