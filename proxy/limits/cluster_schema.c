/*
 * cluster_schema.c: the key names, rate windows and Lua scripts of a fleet's Redis (see
 * cluster_schema.h). Every key a script writes gets a TTL in the same script.
 */
#include <stdio.h>
#include <string.h>

#include "cluster_schema.h"

/* KEYS: ban, sessions, connection rate, messages, recipients. ARGV: now, lease expiry, member,
 * max sessions, rate count, rate window, lease ttl, force. Returns {verdict, ban ms, m, n}. */
static const char admit_lua[] =
    "local ban = redis.call('PTTL', KEYS[1]) "
    "local m = tonumber(redis.call('GET', KEYS[4]) or '0') "
    "local r = tonumber(redis.call('GET', KEYS[5]) or '0') "
    "local v = 0 "
    "if ban > 0 then v = 3 else "
    " redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1]) "
    " local max, rc = tonumber(ARGV[4]), tonumber(ARGV[5]) "
    " if max > 0 and redis.call('ZCARD', KEYS[2]) >= max then v = 1 "
    " elseif rc > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= rc then v = 2 end "
    "end "
    "if v == 0 or ARGV[8] == '1' then "
    " if tonumber(ARGV[5]) > 0 then redis.call('INCR', KEYS[3]) "
    "  redis.call('PEXPIRE', KEYS[3], ARGV[6]) end "
    " redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) redis.call('PEXPIRE', KEYS[2], ARGV[7]) "
    "end "
    "return {v, ban, m, r}";
/* KEYS: client failures, client ban, user failures, user ban. ARGV: ip limit, ip window, ban
 * ms, user limit, user window, count the user, the bans channel, client key, user key (hex).
 * A ban is published to every moat. Returns {ip failures, ip banned, user, banned}. */
static const char fail_lua[] =
    "local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
    "local ban = tonumber(ARGV[3]) "
    "local ipb, u, ub = 0, 0, 0 "
    "if tonumber(ARGV[1]) > 0 and n >= tonumber(ARGV[1]) and ban > 0 then "
    " if redis.call('PTTL', KEYS[2]) < ban then redis.call('SET', KEYS[2], '1', 'PX', ban) end "
    " redis.call('PUBLISH', ARGV[7], 'c ' .. ARGV[8] .. ' ' .. ban) "
    " ipb = 1 end "
    "if ARGV[6] == '1' then "
    " u = redis.call('INCR', KEYS[3]) redis.call('PEXPIRE', KEYS[3], ARGV[5]) "
    " if tonumber(ARGV[4]) > 0 and u >= tonumber(ARGV[4]) and ban > 0 then "
    "  redis.call('SET', KEYS[4], '1', 'PX', ban) "
    "  redis.call('PUBLISH', ARGV[7], 'u ' .. ARGV[9] .. ' ' .. ban) ub = 1 end "
    "end "
    "return {n, ipb, u, ub}";
/* KEYS: counter. ARGV: n, ttl. */
static const char add_lua[] = "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
                              "redis.call('PEXPIRE', KEYS[1], ARGV[2]) return v";
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

uint64_t
cluster_window(const struct rate *r, uint64_t now_ms)
{
    return r->count > 0 && r->window_ms > 0 ? now_ms / r->window_ms + 1 : 1;
}
