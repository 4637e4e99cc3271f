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
    struct authguard g = {.clients = t, .users = t};
    struct ratetable_key c, other;
    key_v4(&c, "192.0.2.7");
    key_v4(&other, "192.0.2.8");
    struct authguard_verdict v;
    uint64_t now = 1000000;
    /* a new session does not reset the delay: the client's failures count */
    for (uint32_t i = 1; i <= 4; i++) {
        authguard_failure(&g, &a, &c, "alice", 5, 1, now + i, &v);
        CHECK(v.ip_failures == i && !v.ip_banned);
        CHECK(v.delay_ms == authguard_delay_ms(&a, i));
    }
    CHECK(!authguard_banned(&g, &a, &c, NULL, 0, now + 10));
    authguard_failure(&g, &a, &c, "alice", 5, 1, now + 20, &v);
    CHECK(v.ip_banned && v.ip_failures == 5);
    CHECK(authguard_banned(&g, &a, &c, NULL, 0, now + 21));
    CHECK(authguard_banned(&g, &a, &c, "bob", 3, now + 21));
    CHECK(!authguard_banned(&g, &a, &other, "alice", 5, now + 21)); /* user bans are off */
    CHECK(authguard_banned(&g, &a, &c, NULL, 0, now + 20 + 9999));
    CHECK(!authguard_banned(&g, &a, &c, NULL, 0, now + 20 + 10000)); /* expired */
    ratetable_free(t);
}

static void
test_ipv6_prefix(void)
{
    struct config_auth a = auth_conf();
    a.ban_ip.count = 2;
    struct ratetable *t = ratetable_new(64, 7);
    struct authguard g = {.clients = t, .users = t};
    struct ratetable_key k1, k2, far;
    key_v6(&k1, "2001:db8:1:2::1");
    key_v6(&k2, "2001:db8:1:2:ffff::9"); /* same /64 */
    key_v6(&far, "2001:db8:1:3::1");
    struct authguard_verdict v;
    authguard_failure(&g, &a, &k1, NULL, 0, 1, 5000, &v);
    authguard_failure(&g, &a, &k2, NULL, 0, 1, 5001, &v);
    CHECK(v.ip_banned && v.ip_failures == 2);
    CHECK(authguard_banned(&g, &a, &k1, NULL, 0, 5002));
    CHECK(!authguard_banned(&g, &a, &far, NULL, 0, 5002));
    ratetable_free(t);
}

static void
test_user_ban(void)
{
    struct config_auth a = auth_conf();
    a.ban_ip.count = 0;
    struct ratetable *t = ratetable_new(64, 7);
    struct authguard g = {.clients = t, .users = t};
    struct ratetable_key c1, c2, c3;
    key_v4(&c1, "198.51.100.1");
    key_v4(&c2, "198.51.100.2");
    key_v4(&c3, "198.51.100.3");
    struct authguard_verdict v;
    /* a user attacked from several addresses */
    authguard_failure(&g, &a, &c1, "alice@example.test", 18, 1, 100, &v);
    authguard_failure(&g, &a, &c2, "alice@example.test", 18, 1, 200, &v);
    CHECK(!v.user_banned);
    authguard_failure(&g, &a, &c3, "alice@example.test", 18, 1, 300, &v);
    CHECK(v.user_banned && !v.ip_banned);
    CHECK(authguard_banned(&g, &a, &c1, "alice@example.test", 18, 301));
    CHECK(!authguard_banned(&g, &a, &c1, "bob@example.test", 16, 301));
    CHECK(!authguard_banned(&g, &a, &c1, NULL, 0, 301));
    /* the window slides: old failures fall out */
    authguard_failure(&g, &a, &c1, "carol", 5, 1, 1000, &v);
    authguard_failure(&g, &a, &c1, "carol", 5, 1, 1000 + 200000, &v);
    authguard_failure(&g, &a, &c1, "carol", 5, 1, 1000 + 400000, &v);
    CHECK(!v.user_banned);
    CHECK(!authguard_banned(&g, &a, &c1, "alice@example.test", 18, 300 + 10000));
    ratetable_free(t);
}

/* Smart lockout: a user-name ban refuses only addresses unfamiliar for the user; failures
 * from a familiar address are not counted against the name; user bans never pin the client
 * table; the familiar table is bounded and forgets after its window. */
static void
test_smart_lockout(void)
{
    struct config_auth a = auth_conf();
    a.ban_ip.count = 0;
    a.familiar_window_ms = 30ull * 86400 * 1000;
    struct ratetable *clients = ratetable_new(16, 7), *users = ratetable_new(64, 8);
    struct familiar *f = familiar_new(64, 9);
    struct authguard g = {.clients = clients, .users = users, .familiar = f};
    struct ratetable_key home, attacker, fresh, home6, home6b;
    key_v4(&home, "127.0.0.3");
    key_v4(&attacker, "127.0.0.5");
    key_v4(&fresh, "127.0.0.4");
    key_v6(&home6, "2001:db8:1:2::1");
    key_v6(&home6b, "2001:db8:1:2::99"); /* the same /64 */
    struct authguard_verdict v;
    uint64_t now = 5000000;
    authguard_login(&g, &home, "alice", 5, now);
    authguard_login(&g, &home6, "alice", 5, now);
    CHECK(familiar_count(f) == 2);
    for (uint32_t i = 1; i <= 3; i++)
        authguard_failure(&g, &a, &attacker, "alice", 5, i, now + i, &v);
    CHECK(v.user_banned && !v.familiar);
    CHECK(authguard_banned(&g, &a, &attacker, "alice", 5, now + 10));
    CHECK(authguard_banned(&g, &a, &fresh, "alice", 5, now + 10));
    CHECK(!authguard_banned(&g, &a, &home, "alice", 5, now + 10));
    CHECK(!authguard_banned(&g, &a, &home6b, "alice", 5, now + 10));
    CHECK(!authguard_banned(&g, &a, &fresh, "bob", 3, now + 10));
    /* alice mistyping at home: not counted against the name, no ban from it */
    authguard_failure(&g, &a, &home, "bob", 3, 1, now + 20, &v);
    authguard_login(&g, &home, "bob", 3, now + 20);
    for (uint32_t i = 1; i <= 5; i++)
        authguard_failure(&g, &a, &home, "bob", 3, 1, now + 30 + i, &v);
    CHECK(v.familiar && !v.user_banned);
    CHECK(!authguard_banned(&g, &a, &fresh, "bob", 3, now + 40));
    /* the window: familiar no more after it */
    CHECK(!familiar_is(f, &(struct ratetable_key){0}, &home, a.familiar_window_ms, now));
    a.familiar_window_ms = 1000;
    CHECK(authguard_banned(&g, &a, &home, "alice", 5, now + 10 + 1000));
    a.familiar_window_ms = 0;
    CHECK(authguard_banned(&g, &a, &home, "alice", 5, now + 10));
    a.familiar_window_ms = 30ull * 86400 * 1000;
    /* many banned user names never fill the client table */
    char name[32];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(name, sizeof(name), "victim%d", i);
        for (uint32_t j = 1; j <= 3; j++)
            authguard_failure(&g, &a, &attacker, name, (size_t)n, j, now + 100, &v);
    }
    CHECK(ratetable_count(clients) <= 1);
    for (int i = 0; i < 16; i++) {
        struct ratetable_key k;
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
        key_v4(&k, ip);
        CHECK(ratetable_connect(clients, &k, 0, &(struct rate){0}, false, now + 200) == RT_OK);
        ratetable_release(clients, &k, now + 200);
    }
    /* bounded: many logins keep at most its capacity, the newest one is there */
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(name, sizeof(name), "u%d", i);
        authguard_login(&g, &fresh, name, (size_t)n, now + 300 + (uint64_t)i);
    }
    CHECK(familiar_count(f) <= 64);
    struct ratetable_key last;
    ratetable_key_user(&last, "u999", 4);
    CHECK(familiar_is(f, &last, &fresh, a.familiar_window_ms, now + 2000));
    familiar_free(f);
    ratetable_free(users);
    ratetable_free(clients);
}

int
main(void)
{
    test_smart_lockout();
    test_delay();
    test_client_ban();
    test_ipv6_prefix();
    test_user_ban();
    return test_finish("test_authguard");
}
