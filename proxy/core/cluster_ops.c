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
    uint64_t now = moat_wall_ms(); /* lease expiries and windows are compared across hosts */
    const struct config_limits *lim = &l->limits;
    const struct rate *cr = &lim->connection_rate_per_ip;
    char ban[CLUSTER_KEY_MAX], rate[2][CLUSTER_KEY_MAX], msgs[2][CLUSTER_KEY_MAX],
        rcpts[2][CLUSTER_KEY_MAX];
    cluster_key(c->prefix, ban, "b", k, 0);
    cluster_rate_keys(c->prefix, rate[0], rate[1], "r", k, cr, now);
    cluster_rate_keys(c->prefix, msgs[0], msgs[1], "m", k, &lim->messages_per_client, now);
    cluster_rate_keys(c->prefix, rcpts[0], rcpts[1], "n", k, &lim->recipients_per_client, now);
    char a_now[24], a_exp[24], a_max[16], a_rc[16], a_rttl[24], a_ttl[16], a_rwt[16];
    snprintf(a_now, sizeof(a_now), "%llu", (unsigned long long)now);
    snprintf(a_exp, sizeof(a_exp), "%llu", (unsigned long long)(now + conf->cluster.lease_ms));
    snprintf(a_max, sizeof(a_max), "%u", lim->max_sessions_per_ip);
    snprintf(a_rc, sizeof(a_rc), "%u", cr->count);
    snprintf(a_rttl, sizeof(a_rttl), "%llu", (unsigned long long)cluster_rate_ttl(cr));
    snprintf(a_ttl, sizeof(a_ttl), "%u", conf->cluster.lease_ms);
    snprintf(a_rwt, sizeof(a_rwt), "%u", cluster_prev_weight(cr, now));
    const char *keys[8] = {ban, lease->key, rate[0], rate[1], msgs[0], msgs[1], rcpts[0], rcpts[1]};
    const char *args[9] = {a_now,  a_exp, lease->member,   a_max, a_rc,
                           a_rttl, a_ttl, dry ? "1" : "0", a_rwt};
    struct cluster_req *q = cluster_req_new(REPLY_ADMIT);
    q->on_done = on_done;
    q->arg = arg;
    q->key = *k;
    q->window = cluster_window(&lim->messages_per_client, now);
    q->window2 = cluster_window(&lim->recipients_per_client, now);
    if (cluster_link_eval(c, q, CLUSTER_SCRIPT_ADMIT, 8, keys, 9, args) != 0) {
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
             (unsigned long long)(moat_wall_ms() + (uint64_t)(c->lease_s * 1000)));
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
    uint64_t now = moat_wall_ms();
    uint64_t window = cluster_window(rate, now);
    if (s->kind != kind || s->key.len != k->len || memcmp(s->key.bytes, k->bytes, k->len) != 0)
        return true; /* not cached: the fleet's count comes with the next add */
    uint64_t cur, prev;
    if (s->window == window) {
        cur = s->count;
        prev = s->prev;
    } else if (s->window + 1 == window) { /* the cached window is the previous one now */
        cur = 0;
        prev = s->count;
    } else {
        return true;
    }
    return cluster_rate_estimate(cur, prev, cluster_prev_weight(rate, now)) + n <= rate->count;
}

void
cluster_rate_add(struct session_env *e, const struct config *conf, const struct ratetable_key *k,
                 enum rate_kind kind, const struct rate *rate, uint32_t n)
{
    struct cluster_link *c = cluster_link_get(e, conf);
    if (c == NULL || !c->up || rate->count == 0)
        return;
    uint64_t now = moat_wall_ms();
    char key[2][CLUSTER_KEY_MAX], a_n[16], a_ttl[24];
    cluster_rate_keys(c->prefix, key[0], key[1], kind == RATE_MESSAGES ? "m" : "n", k, rate, now);
    snprintf(a_n, sizeof(a_n), "%u", n);
    snprintf(a_ttl, sizeof(a_ttl), "%llu", (unsigned long long)cluster_rate_ttl(rate));
    const char *keys[2] = {key[0], key[1]};
    const char *args[2] = {a_n, a_ttl};
    struct cluster_req *q = cluster_req_new(REPLY_ADD);
    q->key = *k;
    q->rate_kind = kind;
    q->window = cluster_window(rate, now);
    (void)cluster_link_eval(c, q, CLUSTER_SCRIPT_ADD, 2, keys, 2, args);
}

void
cluster_auth_failure(struct session_env *e, const struct config *conf, const struct config_auth *a,
                     const struct ratetable_key *k, const char *user, size_t user_len,
                     bool familiar)
{
    struct cluster_link *c = cluster_link_get(e, conf);
    if (c == NULL || !c->up)
        return;
    uint64_t now = moat_wall_ms();
    struct ratetable_key uk = {0};
    bool count_user = user != NULL && user_len > 0 && !familiar;
    if (count_user)
        ratetable_key_user(&uk, user, user_len);
    char f[2][CLUSTER_KEY_MAX], b[CLUSTER_KEY_MAX], uf[2][CLUSTER_KEY_MAX], ub[CLUSTER_KEY_MAX];
    cluster_rate_keys(c->prefix, f[0], f[1], "f", k, &a->ban_ip, now);
    cluster_key(c->prefix, b, "b", k, 0);
    if (count_user) {
        cluster_rate_keys(c->prefix, uf[0], uf[1], "u", &uk, &a->ban_user, now);
        cluster_key(c->prefix, ub, "k", &uk, 0);
    } else {
        snprintf(uf[0], sizeof(uf[0]), "%su:none", c->prefix);
        snprintf(uf[1], sizeof(uf[1]), "%su:none", c->prefix);
        snprintf(ub, sizeof(ub), "%sk:none", c->prefix);
    }
    char a1[16], a2[24], a3[16], a4[16], a5[24], a10[16], a11[16];
    snprintf(a1, sizeof(a1), "%u", a->ban_ip.count);
    snprintf(a2, sizeof(a2), "%llu", (unsigned long long)cluster_rate_ttl(&a->ban_ip));
    snprintf(a3, sizeof(a3), "%u", a->ban_time_ms);
    snprintf(a4, sizeof(a4), "%u", a->ban_user.count);
    snprintf(a5, sizeof(a5), "%llu", (unsigned long long)cluster_rate_ttl(&a->ban_user));
    snprintf(a10, sizeof(a10), "%u", cluster_prev_weight(&a->ban_ip, now));
    snprintf(a11, sizeof(a11), "%u", cluster_prev_weight(&a->ban_user, now));
    char kh[CLUSTER_KEY_HEX], uh[CLUSTER_KEY_HEX];
    cluster_key_hex(k, kh);
    cluster_key_hex(&uk, uh);
    const char *keys[6] = {f[0], f[1], b, uf[0], uf[1], ub};
    const char *args[11] = {a1,         a2, a3, a4,  a5, count_user ? "1" : "0",
                            c->channel, kh, uh, a10, a11};
    struct cluster_req *q = cluster_req_new(REPLY_FAIL);
    q->key = *k;
    q->ban_ms = a->ban_time_ms;
    (void)cluster_link_eval(c, q, CLUSTER_SCRIPT_FAIL, 6, keys, 11, args);
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
