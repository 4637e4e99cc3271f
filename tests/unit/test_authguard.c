/*
 * test_authguard.c: the brute-force accounting with time as an argument: the failure delay
 * (doubling, capped), per-client and per-user bans within a window, their expiry, and that
 * another client or user is unaffected.
 */
#include <arpa/inet.h>

#include "authguard.h"
#include "test.h"

static struct config_auth
auth_conf(void)
{
    struct config_auth a = {0};
    a.failure_delay_ms = 1000;
    a.failure_delay_max_ms = 8000;
    a.ban_ip = (struct rate){.count = 5, .window_ms = 60000};
    a.ban_user = (struct rate){.count = 3, .window_ms = 60000};
    a.ban_time_ms = 10000;
    return a;
}

static void
key_v4(struct ratetable_key *k, const char *ip)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    ratetable_key_addr(k, (struct sockaddr *)&sa, 64);
}

static void
key_v6(struct ratetable_key *k, const char *ip)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, ip, &sa.sin6_addr);
    ratetable_key_addr(k, (struct sockaddr *)&sa, 64);
}

static void
test_delay(void)
{
    struct config_auth a = auth_conf();
    CHECK(authguard_delay_ms(&a, 0) == 0);
    CHECK(authguard_delay_ms(&a, 1) == 1000);
    CHECK(authguard_delay_ms(&a, 2) == 2000);
    CHECK(authguard_delay_ms(&a, 3) == 4000);
    CHECK(authguard_delay_ms(&a, 4) == 8000);
    CHECK(authguard_delay_ms(&a, 5) == 8000);
    CHECK(authguard_delay_ms(&a, 4000000000u) == 8000);
    a.failure_delay_ms = 0;
    CHECK(authguard_delay_ms(&a, 3) == 0);
    a.failure_delay_ms = 3000;
    a.failure_delay_max_ms = 2000; /* a cap below the first delay wins */
    CHECK(authguard_delay_ms(&a, 1) == 2000);
}

static void
test_client_ban(void)
{
    struct config_auth a = auth_conf();
    a.ban_user.count = 0;
    struct ratetable *t = ratetable_new(64, 7);
    struct ratetable_key c, other;
    key_v4(&c, "192.0.2.7");
    key_v4(&other, "192.0.2.8");
    struct authguard_verdict v;
    uint64_t now = 1000000;
    /* a new session does not reset the delay: the client's failures count */
    for (uint32_t i = 1; i <= 4; i++) {
        authguard_failure(t, &a, &c, "alice", 5, 1, now + i, &v);
        CHECK(v.ip_failures == i && !v.ip_banned);
        CHECK(v.delay_ms == authguard_delay_ms(&a, i));
    }
    CHECK(!authguard_banned(t, &c, NULL, 0, now + 10));
    authguard_failure(t, &a, &c, "alice", 5, 1, now + 20, &v);
    CHECK(v.ip_banned && v.ip_failures == 5);
    CHECK(authguard_banned(t, &c, NULL, 0, now + 21));
    CHECK(authguard_banned(t, &c, "bob", 3, now + 21));
    CHECK(!authguard_banned(t, &other, "alice", 5, now + 21)); /* user bans are off */
    CHECK(authguard_banned(t, &c, NULL, 0, now + 20 + 9999));
    CHECK(!authguard_banned(t, &c, NULL, 0, now + 20 + 10000)); /* expired */
    ratetable_free(t);
}

static void
test_ipv6_prefix(void)
{
    struct config_auth a = auth_conf();
    a.ban_ip.count = 2;
    struct ratetable *t = ratetable_new(64, 7);
    struct ratetable_key k1, k2, far;
    key_v6(&k1, "2001:db8:1:2::1");
    key_v6(&k2, "2001:db8:1:2:ffff::9"); /* same /64 */
    key_v6(&far, "2001:db8:1:3::1");
    struct authguard_verdict v;
    authguard_failure(t, &a, &k1, NULL, 0, 1, 5000, &v);
    authguard_failure(t, &a, &k2, NULL, 0, 1, 5001, &v);
    CHECK(v.ip_banned && v.ip_failures == 2);
    CHECK(authguard_banned(t, &k1, NULL, 0, 5002));
    CHECK(!authguard_banned(t, &far, NULL, 0, 5002));
    ratetable_free(t);
}

static void
test_user_ban(void)
{
    struct config_auth a = auth_conf();
    a.ban_ip.count = 0;
    struct ratetable *t = ratetable_new(64, 7);
    struct ratetable_key c1, c2, c3;
    key_v4(&c1, "198.51.100.1");
    key_v4(&c2, "198.51.100.2");
    key_v4(&c3, "198.51.100.3");
    struct authguard_verdict v;
    /* a user attacked from several addresses */
    authguard_failure(t, &a, &c1, "alice@example.test", 18, 1, 100, &v);
    authguard_failure(t, &a, &c2, "alice@example.test", 18, 1, 200, &v);
    CHECK(!v.user_banned);
    authguard_failure(t, &a, &c3, "alice@example.test", 18, 1, 300, &v);
    CHECK(v.user_banned && !v.ip_banned);
    CHECK(authguard_banned(t, &c1, "alice@example.test", 18, 301));
    CHECK(!authguard_banned(t, &c1, "bob@example.test", 16, 301));
    CHECK(!authguard_banned(t, &c1, NULL, 0, 301));
    /* the window slides: old failures fall out */
    authguard_failure(t, &a, &c1, "carol", 5, 1, 1000, &v);
    authguard_failure(t, &a, &c1, "carol", 5, 1, 1000 + 200000, &v);
    authguard_failure(t, &a, &c1, "carol", 5, 1, 1000 + 400000, &v);
    CHECK(!v.user_banned);
    CHECK(!authguard_banned(t, &c1, "alice@example.test", 18, 300 + 10000));
    ratetable_free(t);
}

int
main(void)
{
    test_delay();
    test_client_ban();
    test_ipv6_prefix();
    test_user_ban();
    return test_finish("test_authguard");
}
