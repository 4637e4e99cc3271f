/*
 * authguard.c: brute-force policy for logins over a ratetable (see authguard.h). Pure: time is
 * an argument; it never sleeps and never sees a password, only user names (hashed by the table).
 */
#include "authguard.h"

uint32_t
authguard_delay_ms(const struct config_auth *a, uint32_t n)
{
    if (n == 0 || a->failure_delay_ms == 0)
        return 0;
    uint64_t d = a->failure_delay_ms;
    for (uint32_t i = 1; i < n && d < a->failure_delay_max_ms; i++)
        d *= 2;
    if (a->failure_delay_max_ms > 0 && d > a->failure_delay_max_ms)
        d = a->failure_delay_max_ms;
    return (uint32_t)d;
}

void
authguard_failure(struct ratetable *t, const struct config_auth *a,
                  const struct ratetable_key *client, const char *user, size_t user_len,
                  uint32_t session_failures, uint64_t now_ms, struct authguard_verdict *out)
{
    *out = (struct authguard_verdict){0};
    uint32_t n = session_failures;
    if (client != NULL) {
        out->ip_failures = ratetable_add(t, client, RATE_AUTH_FAILURES, &a->ban_ip, 1, now_ms);
        if (a->ban_ip.count > 0 && out->ip_failures >= a->ban_ip.count && a->ban_time_ms > 0) {
            ratetable_ban(t, client, now_ms + a->ban_time_ms, now_ms);
            out->ip_banned = true;
        }
        if (out->ip_failures > n)
            n = out->ip_failures;
    }
    if (user != NULL && user_len > 0) {
        struct ratetable_key k;
        ratetable_key_user(&k, user, user_len);
        uint32_t u = ratetable_add(t, &k, RATE_AUTH_FAILURES, &a->ban_user, 1, now_ms);
        if (a->ban_user.count > 0 && u >= a->ban_user.count && a->ban_time_ms > 0) {
            ratetable_ban(t, &k, now_ms + a->ban_time_ms, now_ms);
            out->user_banned = true;
        }
    }
    out->delay_ms = authguard_delay_ms(a, n);
}

bool
authguard_banned(struct ratetable *t, const struct ratetable_key *client, const char *user,
                 size_t user_len, uint64_t now_ms)
{
    if (client != NULL && ratetable_banned_for(t, client, now_ms) > 0)
        return true;
    if (user == NULL || user_len == 0)
        return false;
    struct ratetable_key k;
    ratetable_key_user(&k, user, user_len);
    return ratetable_banned_for(t, &k, now_ms) > 0;
}
