/*
 * test_config_fleet.c: the fleet's configuration: proxy_protocol / proxy_trusted per listener
 * (with the proxy_header timeout, inherited and overridden) and the [cluster] section.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "config.h"
#include "test.h"

#define LISTENER                                                                                   \
    "[backend b]\naddress = 127.0.0.1:10025\n"                                                     \
    "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:2525\ntls = none\nbackend = b\n"

static struct config *
load(const char *text, struct config_errors *errs)
{
    return config_load_string("t.conf", text, errs);
}

static bool
has_error(const struct config_errors *errs, const char *want)
{
    for (size_t i = 0; i < errs->n; i++) {
        if (strstr(errs->lines[i], want) != NULL)
            return true;
    }
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "  got: %s\n", errs->lines[i]);
    return false;
}

static void
test_defaults(void)
{
    struct config_errors errs;
    struct config *c = load(LISTENER, &errs);
    CHECK(c != NULL && errs.n == 0);
    if (c != NULL) {
        CHECK(c->listeners->proxy_protocol == PROXY_ACCEPT_OFF);
        CHECK(c->listeners->proxy_trusted.n == 0);
        CHECK(c->listeners->timeouts.proxy_header_ms == 3000);
        CHECK(c->cluster.redis_addr_len == 0);
        CHECK_STR(c->cluster.prefix, "moat:");
        CHECK(c->cluster.timeout_ms == 100 && c->cluster.lease_ms == 30000);
    }
    config_errors_free(&errs);
    config_unref(c);
}

static void
test_proxy_listener(void)
{
    struct config_errors errs;
    struct config *c = load("[timeouts]\nproxy_header = 2s\n" LISTENER
                            "proxy_protocol = any\nproxy_trusted = 10.0.0.0/8\n"
                            "proxy_trusted = 192.0.2.1\nproxy_header = 500ms\n",
                            &errs);
    CHECK(c != NULL && errs.n == 0);
    if (c != NULL) {
        const struct config_listener *l = c->listeners;
        CHECK(l->proxy_protocol == PROXY_ACCEPT_ANY && l->proxy_trusted.n == 2);
        CHECK(l->timeouts.proxy_header_ms == 500 && c->timeouts.proxy_header_ms == 2000);
        struct sockaddr_in in = {.sin_family = AF_INET}, out = in;
        inet_pton(AF_INET, "10.1.2.3", &in.sin_addr);
        inet_pton(AF_INET, "192.0.2.2", &out.sin_addr);
        CHECK(cidr_list_match(&l->proxy_trusted, (struct sockaddr *)&in));
        CHECK(!cidr_list_match(&l->proxy_trusted, (struct sockaddr *)&out));
    }
    config_errors_free(&errs);
    config_unref(c);
    /* a balancer nobody trusts, a version that does not exist, a zero timeout */
    c = load(LISTENER "proxy_protocol = v1\n", &errs);
    CHECK(c == NULL && has_error(&errs, "uses proxy_protocol = v1 but trusts no balancer"));
    config_errors_free(&errs);
    c = load(LISTENER "proxy_protocol = v3\nproxy_trusted = 10.0.0.1\n", &errs);
    CHECK(c == NULL && has_error(&errs, "expected one of off, v1, v2, any"));
    config_errors_free(&errs);
    c = load(LISTENER "proxy_protocol = v2\nproxy_trusted = 10.0.0.300\n", &errs);
    CHECK(c == NULL && has_error(&errs, "bad CIDR '10.0.0.300'"));
    config_errors_free(&errs);
    c = load("[timeouts]\nproxy_header = 0\n" LISTENER, &errs);
    CHECK(c == NULL && has_error(&errs, "proxy_header"));
    config_errors_free(&errs);
}

static void
test_cluster(void)
{
    struct config_errors errs;
    struct config *c = load("[cluster]\nredis = [::1]:6380\nusername = moat\npassword = s3cret\n"
                            "prefix = fleet1:\ntimeout = 50ms\nlease = 1m\n" LISTENER,
                            &errs);
    CHECK(c != NULL && errs.n == 0);
    if (c != NULL) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&c->cluster.redis_addr;
        CHECK(c->cluster.redis_addr_len > 0 && a->sin6_family == AF_INET6 &&
              ntohs(a->sin6_port) == 6380);
        CHECK_STR(c->cluster.username, "moat");
        CHECK_STR(c->cluster.password, "s3cret");
        CHECK_STR(c->cluster.prefix, "fleet1:");
        CHECK(c->cluster.timeout_ms == 50 && c->cluster.lease_ms == 60000);
    }
    config_errors_free(&errs);
    config_unref(c);
    c = load("[cluster]\nredis = nowhere\n" LISTENER, &errs);
    CHECK(c == NULL && has_error(&errs, "redis"));
    config_errors_free(&errs);
    c = load("[cluster]\ntimeout = 0\n" LISTENER, &errs);
    CHECK(c == NULL && has_error(&errs, "timeout"));
    config_errors_free(&errs);
    c = load("[cluster]\nredis_server = 127.0.0.1:6379\n" LISTENER, &errs);
    CHECK(c == NULL && has_error(&errs, "unknown key in [cluster]"));
    config_errors_free(&errs);
}

int
main(void)
{
    test_defaults();
    test_proxy_listener();
    test_cluster();
    return test_finish("test_config_fleet");
}
