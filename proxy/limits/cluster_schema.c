/*
 * cluster_schema.c: the key names, rate windows and Lua scripts of a fleet's Redis (see
 * cluster_schema.h). Every key a script writes gets a TTL in the same script.
 */
#include <stdio.h>
#include <string.h>

#include "cluster_schema.h"

/* A rate is a sliding window, approximated as the local table does it (ratetable.c): the current
 * fixed window's count plus the previous one's, weighted by how much of it the sliding window
 * still covers. Each window is a counter key that lives two windows; n(k) reads one, and
 * est(cur, prev, weight) is the estimate with the weight in millionths. */
#define LUA_RATE                                                                                   \
    "local function n(k) return tonumber(redis.call('GET', k) or '0') end "                        \
    "local function est(c, p, w) return c + math.floor(n(p) * tonumber(w) / 1000000) end "

/* KEYS: ban, sessions, connection rate (current, previous window), messages (current, previous),
 * recipients (current, previous). ARGV: now, lease expiry, member, max sessions, rate count,
 * rate ttl, lease ttl, force, rate weight. Returns {verdict, ban ms, m, m previous, n, n
 * previous}. */
static const char admit_lua[] = LUA_RATE
    "local ban = redis.call('PTTL', KEYS[1]) "
    "local v = 0 "
    "if ban > 0 then v = 3 else "
    " redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1]) "
    " local max, rc = tonumber(ARGV[4]), tonumber(ARGV[5]) "
    " if max > 0 and redis.call('ZCARD', KEYS[2]) >= max then v = 1 "
    " elseif rc > 0 and est(n(KEYS[3]), KEYS[4], ARGV[9]) >= rc then v = 2 end "
    "end "
    "if v == 0 or ARGV[8] == '1' then "
    " if tonumber(ARGV[5]) > 0 then redis.call('INCR', KEYS[3]) "
    "  redis.call('PEXPIRE', KEYS[3], ARGV[6]) end "
    " redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) redis.call('PEXPIRE', KEYS[2], ARGV[7]) "
    "end "
    "return {v, ban, n(KEYS[5]), n(KEYS[6]), n(KEYS[7]), n(KEYS[8])}";
/* KEYS: client failures (current, previous window), client ban, user failures (current,
 * previous), user ban. ARGV: ip limit, ip ttl, ban ms, user limit, user ttl, count the user, the
 * bans channel, client key, user key (hex), ip weight, user weight. A ban is published to every
 * moat. Returns {ip failures, ip banned, user failures, user banned}. */
static const char fail_lua[] = LUA_RATE
    "local f = est(redis.call('INCR', KEYS[1]), KEYS[2], ARGV[10]) "
    "redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
    "local ban = tonumber(ARGV[3]) "
    "local ipb, u, ub = 0, 0, 0 "
    "if tonumber(ARGV[1]) > 0 and f >= tonumber(ARGV[1]) and ban > 0 then "
    " if redis.call('PTTL', KEYS[3]) < ban then redis.call('SET', KEYS[3], '1', 'PX', ban) end "
    " redis.call('PUBLISH', ARGV[7], 'c ' .. ARGV[8] .. ' ' .. ban) "
    " ipb = 1 end "
    "if ARGV[6] == '1' then "
    " u = est(redis.call('INCR', KEYS[4]), KEYS[5], ARGV[11]) "
    " redis.call('PEXPIRE', KEYS[4], ARGV[5]) "
    " if tonumber(ARGV[4]) > 0 and u >= tonumber(ARGV[4]) and ban > 0 then "
    "  redis.call('SET', KEYS[6], '1', 'PX', ban) "
    "  redis.call('PUBLISH', ARGV[7], 'u ' .. ARGV[9] .. ' ' .. ban) ub = 1 end "
    "end "
    "return {f, ipb, u, ub}";
/* KEYS: counter (current, previous window). ARGV: n, ttl. Returns {current, previous}. */
static const char add_lua[] = LUA_RATE "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
                                       "redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
                                       "return {v, n(KEYS[2])}";
/* KEYS: sessions. ARGV: expiry, member, ttl. */
static const char renew_lua[] = "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) "
                                "return redis.call('PEXPIRE', KEYS[1], ARGV[3])";
const char *const cluster_scripts[CLUSTER_SCRIPTS] = {
    [CLUSTER_SCRIPT_ADMIT] = admit_lua,
    [CLUSTER_SCRIPT_FAIL] = fail_lua,
    [CLUSTER_SCRIPT_ADD] = add_lua,
    [CLUSTER_SCRIPT_RENEW] = renew_lua,
};

void
cluster_key(const char *prefix, char *out, const char *kind, const struct ratetable_key *k,
            uint64_t window)
{
    char who[CONFVAL_ADDR_STRLEN + 40];
    if (k->len == 17 && k->bytes[0] == RTKEY_USER) {
        uint64_t a, b;
        memcpy(&a, k->bytes + 1, 8);
        memcpy(&b, k->bytes + 9, 8);
        snprintf(who, sizeof(who), "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
    } else {
        ratetable_key_format(k, who, sizeof(who));
    }
    if (window > 0)
        snprintf(out, CLUSTER_KEY_MAX, "%s%s:{%s}:%llu", prefix, kind, who,
                 (unsigned long long)window);
    else
        snprintf(out, CLUSTER_KEY_MAX, "%s%s:{%s}", prefix, kind, who);
}

static bool
rate_on(const struct rate *r)
{
    return r->count > 0 && r->window_ms > 0;
}

uint64_t
cluster_window(const struct rate *r, uint64_t now_ms)
{
    return rate_on(r) ? now_ms / r->window_ms + 1 : 1;
}

void
cluster_rate_keys(const char *prefix, char *cur, char *prev, const char *kind,
                  const struct ratetable_key *k, const struct rate *r, uint64_t now_ms)
{
    uint64_t w = cluster_window(r, now_ms);
    cluster_key(prefix, cur, kind, k, w);
    cluster_key(prefix, prev, kind, k, w > 1 ? w - 1 : w); /* no limit: never read */
}

uint32_t
cluster_prev_weight(const struct rate *r, uint64_t now_ms)
{
    if (!rate_on(r))
        return 0;
    uint64_t left = r->window_ms - now_ms % r->window_ms;
    return (uint32_t)(left * CLUSTER_WEIGHT_ONE / r->window_ms);
}

uint64_t
cluster_rate_estimate(uint64_t cur, uint64_t prev, uint32_t weight)
{
    return cur + prev * weight / CLUSTER_WEIGHT_ONE;
}

uint64_t
cluster_rate_ttl(const struct rate *r)
{
    return 2 * (uint64_t)MOAT_MAX(r->window_ms, 1u);
}
