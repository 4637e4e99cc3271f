/*
 * test_ratetable.c: unit tests for the per-client counter table: keys from addresses (IPv4,
 * mapped, IPv6 prefixes) and user names, concurrency accounting, sliding-window rates, bans, and
 * the bound: an address sprayer never grows the table and never evicts a client with sessions.
 * Time is always an argument.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ratetable.h"
#include "test.h"

static struct sockaddr_storage
addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
    } else {
        CHECK(inet_pton(AF_INET6, text, &a6->sin6_addr) == 1);
        a6->sin6_family = AF_INET6;
    }
    return ss;
}

static struct ratetable_key
key(const char *text)
{
    struct sockaddr_storage ss = addr(text);
    struct ratetable_key k;
    ratetable_key_addr(&k, (struct sockaddr *)&ss, 64);
    return k;
}

static void
test_keys(void)
{
    char buf[80];
    struct ratetable_key a = key("192.0.2.7"), b = key("::ffff:192.0.2.7");
    CHECK(a.len == b.len && memcmp(a.bytes, b.bytes, a.len) == 0);
    CHECK_STR(ratetable_key_format(&a, buf, sizeof(buf)), "192.0.2.7");
    struct ratetable_key c = key("2001:db8:1:2:aaaa::1"), d = key("2001:db8:1:2:bbbb::9");
    CHECK(c.len == d.len && memcmp(c.bytes, d.bytes, c.len) == 0);
    CHECK_STR(ratetable_key_format(&c, buf, sizeof(buf)), "2001:db8:1:2::/64");
    struct ratetable_key e = key("2001:db8:1:3::1");
    CHECK(memcmp(c.bytes, e.bytes, c.len) != 0);
    /* a /128 keeps hosts apart; a /48 merges subnets */
    struct sockaddr_storage s1 = addr("2001:db8:1:2::1"), s2 = addr("2001:db8:1:2::2");
    struct ratetable_key k1, k2;
    ratetable_key_addr(&k1, (struct sockaddr *)&s1, 128);
    ratetable_key_addr(&k2, (struct sockaddr *)&s2, 128);
    CHECK(memcmp(k1.bytes, k2.bytes, k1.len) != 0);
    s2 = addr("2001:db8:1:ffff::2");
    ratetable_key_addr(&k1, (struct sockaddr *)&s1, 48);
    ratetable_key_addr(&k2, (struct sockaddr *)&s2, 48);
    CHECK(memcmp(k1.bytes, k2.bytes, k1.len) == 0);
    CHECK_STR(ratetable_key_format(&k1, buf, sizeof(buf)), "2001:db8:1::/48");
    /* odd prefix lengths mask inside a byte */
    s1 = addr("2001:db8:1:2::1");
    s2 = addr("2001:db8:1:3::1");
    ratetable_key_addr(&k1, (struct sockaddr *)&s1, 63);
    ratetable_key_addr(&k2, (struct sockaddr *)&s2, 63);
    CHECK(memcmp(k1.bytes, k2.bytes, k1.len) == 0);
    /* user names: equal names equal keys, different names differ, never equal to an address */
    struct ratetable_key u1, u2, u3;
    ratetable_key_user(&u1, "alice@example.test", 18);
    ratetable_key_user(&u2, "alice@example.test", 18);
    ratetable_key_user(&u3, "alice@example.tesu", 18);
    CHECK(memcmp(u1.bytes, u2.bytes, u1.len) == 0);
    CHECK(memcmp(u1.bytes, u3.bytes, u1.len) != 0);
    CHECK(u1.bytes[0] == RTKEY_USER && a.bytes[0] == RTKEY_IPV4 && c.bytes[0] == RTKEY_IPV6);
    CHECK(strncmp(ratetable_key_format(&u1, buf, sizeof(buf)), "user:", 5) == 0);
}

static void
test_concurrency(void)
{
    struct ratetable *t = ratetable_new(16, 1);
    struct ratetable_key a = key("192.0.2.1"), b = key("192.0.2.2");
    struct rate none = {0, 0};
    CHECK(ratetable_connect(t, &a, 2, &none, false, 1000) == RT_OK);
    CHECK(ratetable_connect(t, &a, 2, &none, false, 1000) == RT_OK);
    CHECK(ratetable_connect(t, &a, 2, &none, false, 1000) == RT_CONCURRENT);
    CHECK(ratetable_concurrent(t, &a) == 2);
    CHECK(ratetable_connect(t, &b, 2, &none, false, 1000) == RT_OK);
    ratetable_release(t, &a, 1001);
    CHECK(ratetable_concurrent(t, &a) == 1);
    CHECK(ratetable_connect(t, &a, 2, &none, false, 1002) == RT_OK);
    /* dry run: the verdict is reported and the connection counted anyway */
    CHECK(ratetable_connect(t, &a, 2, &none, true, 1003) == RT_CONCURRENT);
    CHECK(ratetable_concurrent(t, &a) == 3);
    for (int i = 0; i < 5; i++)
        ratetable_release(t, &a, 1004);
    CHECK(ratetable_concurrent(t, &a) == 0);                         /* never below zero */
    CHECK(ratetable_connect(t, &a, 0, &none, false, 1005) == RT_OK); /* 0 = unlimited */
    struct ratetable_key unknown = key("198.51.100.1");
    ratetable_release(t, &unknown, 1006); /* ignored */
    CHECK(ratetable_count(t) == 2);
    ratetable_free(t);
}

static void
test_rates(void)
{
    struct ratetable *t = ratetable_new(16, 2);
    struct ratetable_key a = key("192.0.2.1");
    struct rate r = {3, 1000};
    uint64_t now = 50000;
    for (int i = 0; i < 3; i++) {
        CHECK(ratetable_connect(t, &a, 0, &r, false, now + (uint64_t)i) == RT_OK);
        ratetable_release(t, &a, now + (uint64_t)i);
    }
    CHECK(ratetable_connect(t, &a, 0, &r, false, now + 10) == RT_RATE);
    CHECK(ratetable_connect(t, &a, 0, &r, false, now + 999) == RT_RATE);
    /* a refused attempt is not counted: right after the window the previous one still weighs */
    CHECK(ratetable_connect(t, &a, 0, &r, false, now + 1000) == RT_RATE);
    /* half way through the next window: 3 * 0.5 = 1 (rounded down) + 0 < 3 */
    CHECK(ratetable_connect(t, &a, 0, &r, false, now + 1500) == RT_OK);
    /* two windows later everything is forgotten */
    for (int i = 0; i < 3; i++)
        CHECK(ratetable_take(t, &a, RATE_MESSAGES, &r, 1, false, now + 5000) == RT_OK);
    CHECK(ratetable_take(t, &a, RATE_MESSAGES, &r, 1, false, now + 5000) == RT_RATE);
    CHECK(ratetable_check(t, &a, RATE_MESSAGES, &r, 1, now + 5000) == RT_RATE);
    CHECK(ratetable_check(t, &a, RATE_RECIPIENTS, &r, 3, now + 5000) == RT_OK);
    CHECK(ratetable_check(t, &a, RATE_RECIPIENTS, &r, 4, now + 5000) == RT_RATE);
    CHECK(ratetable_take(t, &a, RATE_MESSAGES, &r, 1, true, now + 5000) == RT_RATE);
    CHECK(ratetable_add(t, &a, RATE_MESSAGES, &r, 1, now + 5001) == 5);
    CHECK(ratetable_check(t, &a, RATE_MESSAGES, &r, 1, now + 7001) == RT_OK);
    /* unknown keys are within any rate unless n alone exceeds it */
    struct ratetable_key b = key("192.0.2.99");
    CHECK(ratetable_check(t, &b, RATE_MESSAGES, &r, 3, now) == RT_OK);
    CHECK(ratetable_check(t, &b, RATE_MESSAGES, &r, 4, now) == RT_RATE);
    struct rate unlimited = {0, 0};
    CHECK(ratetable_take(t, &b, RATE_MESSAGES, &unlimited, 1000, false, now) == RT_OK);
    CHECK(ratetable_add(t, &b, RATE_MESSAGES, &unlimited, 1000, now) == 0);
    /* the clock going backwards restarts the window instead of underflowing */
    CHECK(ratetable_take(t, &a, RATE_RECIPIENTS, &r, 1, false, 10) == RT_OK);
    ratetable_free(t);
}

static void
test_bans(void)
{
    struct ratetable *t = ratetable_new(4, 3);
    struct ratetable_key a = key("192.0.2.1");
    struct rate none = {0, 0};
    CHECK(ratetable_banned_for(t, &a, 100) == 0);
    ratetable_ban(t, &a, 600, 100);
    CHECK(ratetable_banned_for(t, &a, 100) == 500);
    ratetable_ban(t, &a, 300, 100); /* never shortens */
    CHECK(ratetable_banned_for(t, &a, 200) == 400);
    CHECK(ratetable_connect(t, &a, 0, &none, false, 599) == RT_BANNED);
    CHECK(ratetable_connect(t, &a, 0, &none, false, 600) == RT_OK);
    ratetable_free(t);
}

static void
test_bound(void)
{
    enum { CAP = 8 };
    struct ratetable *t = ratetable_new(CAP, 4);
    struct rate r = {1, 60000};
    struct ratetable_key pinned = key("10.0.0.1"), banned = key("10.0.0.2");
    CHECK(ratetable_connect(t, &pinned, 5, &r, false, 1000) == RT_OK);
    ratetable_ban(t, &banned, 1000000, 1000);
    char text[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(text, sizeof(text), "172.16.%d.%d", i / 250, i % 250);
        struct ratetable_key k = key(text);
        CHECK(ratetable_take(t, &k, RATE_AUTH_FAILURES, &r, 1, false, 2000 + (uint64_t)i) == RT_OK);
        CHECK(ratetable_count(t) <= CAP);
    }
    CHECK(ratetable_count(t) == CAP);
    CHECK(ratetable_concurrent(t, &pinned) == 1);
    CHECK(ratetable_banned_for(t, &banned, 5000) > 0);
    /* the pinned client's rate state survived the spray */
    CHECK(ratetable_connect(t, &pinned, 5, &r, false, 5000) == RT_RATE);
    /* every entry pinned: a new key gets RT_FULL, is not counted, and nothing breaks */
    struct ratetable *small = ratetable_new(2, 5);
    struct ratetable_key x = key("192.0.2.10"), y = key("192.0.2.11"), z = key("192.0.2.12");
    struct rate none = {0, 0};
    CHECK(ratetable_connect(small, &x, 0, &none, false, 1) == RT_OK);
    CHECK(ratetable_connect(small, &y, 0, &none, false, 1) == RT_OK);
    CHECK(ratetable_connect(small, &z, 0, &none, false, 1) == RT_FULL);
    CHECK(ratetable_take(small, &z, RATE_MESSAGES, &r, 1, false, 1) == RT_FULL);
    ratetable_release(small, &x, 2);
    CHECK(ratetable_connect(small, &z, 0, &none, false, 3) == RT_OK);
    CHECK(ratetable_concurrent(small, &x) == 0 && ratetable_concurrent(small, &z) == 1);
    CHECK(ratetable_count(small) == 2);
    ratetable_free(small);
    ratetable_free(t);
}

struct thread_arg {
    struct ratetable *t;
    int index;
};

static void *
hammer(void *p)
{
    struct thread_arg *arg = p;
    struct rate none = {0, 0};
    char text[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(text, sizeof(text), "10.%d.%d.%d", arg->index, (i / 200) % 250, i % 10);
        struct ratetable_key k = key(text);
        if (ratetable_connect(arg->t, &k, 0, &none, false, (uint64_t)i + 1) == RT_OK)
            ratetable_release(arg->t, &k, (uint64_t)i + 1);
    }
    return NULL;
}

static void
test_threads(void)
{
    struct ratetable *t = ratetable_new(64, 6);
    pthread_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){t, i};
        pthread_create(&th[i], NULL, hammer, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK(ratetable_count(t) <= 64);
    struct ratetable_key k = key("10.0.0.0");
    CHECK(ratetable_concurrent(t, &k) == 0);
    ratetable_free(t);
}

int
main(void)
{
    test_keys();
    test_concurrency();
    test_rates();
    test_bans();
    test_bound();
    test_threads();
    return test_finish("test_ratetable");
}
