/*
 * test_dns_cache.c: the resolver cache's memory accounting, with time as an argument: answers are
 * charged by their bytes, the cache stays within cache_bytes however large the answers, one
 * answer keeps at most DNS_ANSWER_MAX_BYTES (and says it was cut), and expired entries are freed,
 * not only overwritten.
 */
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dns.h"
#include "test.h"

static struct config_dns
dns_conf(size_t cache_bytes)
{
    struct config_dns d;
    memset(&d, 0, sizeof(d));
    d.servers = (char *)"127.0.0.1:1";
    d.timeout_ms = 100;
    d.tries = 1;
    d.cache_size = 10000;
    d.cache_bytes = cache_bytes;
    d.cache_max_ttl_ms = 60000;
    d.negative_ttl_ms = 1000;
    d.tempfail_ttl_ms = 1000;
    return d;
}

static void
test_budget(struct ev_loop *loop)
{
    struct config_dns d = dns_conf(256 * 1024);
    struct dns_resolver *r = dns_resolver_new_test(loop, &d);
    CHECK(r != NULL);
    static char big[4001];
    memset(big, 'x', sizeof(big) - 1);
    const char *strs[4] = {big, big, big, big}; /* 16000 bytes a name */
    size_t count, bytes;
    for (int i = 0; i < 500; i++) {
        char name[64];
        snprintf(name, sizeof(name), "n%d.huge.test", i);
        dns_cache_put_test(r, DNS_T_TXT, name, strs, 4, 100.0);
        dns_cache_stats(r, &count, &bytes);
        /* the new entry may overshoot by itself, never more */
        CHECK(bytes <= d.cache_bytes + 16000 + 1024);
    }
    dns_cache_stats(r, &count, &bytes);
    CHECK(count < 20 && count > 5);
    /* the newest is kept, the oldest went first */
    CHECK(dns_cache_has_test(r, DNS_T_TXT, "n499.huge.test"));
    CHECK(!dns_cache_has_test(r, DNS_T_TXT, "n0.huge.test"));
    dns_resolver_free(r);
}

static void
test_answer_cap(struct ev_loop *loop)
{
    struct config_dns d = dns_conf(4u << 20);
    struct dns_resolver *r = dns_resolver_new_test(loop, &d);
    static char big[4001];
    memset(big, 'y', sizeof(big) - 1);
    const char *strs[20];
    for (int i = 0; i < 20; i++)
        strs[i] = big;
    size_t count, bytes;
    dns_cache_put_test(r, DNS_T_TXT, "cut.test", strs, 20, 10.0);
    dns_cache_stats(r, &count, &bytes);
    CHECK(count == 1);
    CHECK(bytes < DNS_ANSWER_MAX_BYTES + 2048); /* 80000 bytes offered, at most 16k kept */
    struct dns_answer a;
    memset(&a, 0, sizeof(a));
    CHECK(dns_answer_bytes(&a) == 0);
    dns_resolver_free(r);
}

static void
test_expiry_frees(struct ev_loop *loop)
{
    struct config_dns d = dns_conf(4u << 20);
    struct dns_resolver *r = dns_resolver_new_test(loop, &d);
    const char *one[1] = {"v=spf1 -all"};
    size_t count, bytes, base_bytes;
    for (int i = 0; i < 100; i++) {
        char name[64];
        snprintf(name, sizeof(name), "e%d.test", i);
        dns_cache_put_test(r, DNS_T_TXT, name, one, 1, 1000.0);
    }
    dns_cache_stats(r, &count, &base_bytes);
    CHECK(count == 100);
    /* still fresh: nothing goes */
    dns_cache_put_test(r, DNS_T_TXT, "fresh.test", one, 1, 1030.0);
    dns_cache_stats(r, &count, &bytes);
    CHECK(count == 101 && bytes > base_bytes);
    /* an hour later every one of them expired: one insertion frees them all */
    dns_cache_put_test(r, DNS_T_TXT, "late.test", one, 1, 1000.0 + 3600.0 + 120.0);
    dns_cache_stats(r, &count, &bytes);
    CHECK(count == 1);
    CHECK(bytes < base_bytes / 50);
    CHECK(dns_cache_has_test(r, DNS_T_TXT, "late.test"));
    CHECK(!dns_cache_has_test(r, DNS_T_TXT, "e0.test"));
    dns_resolver_free(r);
}

int
main(void)
{
    struct ev_loop *loop = ev_loop_new(0);
    test_budget(loop);
    test_answer_cap(loop);
    test_expiry_frees(loop);
    ev_loop_destroy(loop);
    return test_finish("test_dns_cache");
}
