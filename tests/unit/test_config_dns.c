/*
 * test_config_dns.c: the [dns] section: defaults (every check off), a full section, the DNSBL
 * specification parsed at load, and the errors moat -t reports for bad lists, servers,
 * thresholds, and enforcement asked on a listener that cannot enforce.
 */
#include <stdlib.h>

#include "config.h"
#include "dnsbl.h"
#include "test.h"

#define MINIMAL                                                                                    \
    "[backend b]\naddress = 127.0.0.1:10025\n"                                                     \
    "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:2525\ntls = none\nbackend = b\n"

static struct config *
load(const char *text, struct config_errors *errs)
{
    return config_load_string("t.conf", text, errs);
}

static void
test_defaults(void)
{
    struct config_errors errs;
    struct config *c = load(MINIMAL, &errs);
    CHECK(c != NULL && errs.n == 0);
    if (c != NULL) {
        CHECK(c->dns.fcrdns == DNS_POLICY_OFF && c->dns.helo_check == DNS_POLICY_OFF);
        CHECK(c->dns.spf == DNS_POLICY_OFF && c->dns.dnsbl_list == NULL);
        CHECK(c->dns.servers == NULL && c->dns.timeout_ms == 1500 && c->dns.tries == 2);
        CHECK(c->dns.dnsbl_threshold == 1 && c->dns.dnsbl_allowlist_threshold == 0);
        CHECK(c->listeners->dns_checks == DNS_CHECKS_AUTO);
    }
    config_unref(c);
    config_errors_free(&errs);
}

static void
test_full(void)
{
    struct config_errors errs;
    struct config *c =
        load("[dns]\nservers = 127.0.0.1:5353 [::1]:53\ntimeout = 300ms\n"
             "fcrdns = reject\nhelo_check = dry-run\nhelo_resolve = yes\n"
             "dnsbl = bl.test=127.0.0.[2..11]*3, wl.test*-5\ndnsbl_threshold = 3\n"
             "dnsbl_allowlist_threshold = -5\nspf = warn\n" MINIMAL "dns_checks = log\n",
             &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  %s\n", errs.lines[i]);
    CHECK(c != NULL && errs.n == 0);
    if (c != NULL) {
        CHECK_STR(c->dns.servers, "127.0.0.1:5353,[::1]:53");
        CHECK(c->dns.timeout_ms == 300 && c->dns.fcrdns == DNS_POLICY_REJECT);
        CHECK(c->dns.helo_check == DNS_POLICY_DRY_RUN && c->dns.helo_resolve);
        CHECK(c->dns.dnsbl_list != NULL && c->dns.dnsbl_list->n == 2);
        CHECK(c->dns.dnsbl_allowlist_threshold == -5 && c->dns.spf == DNS_POLICY_WARN);
        CHECK(c->listeners->dns_checks == DNS_CHECKS_LOG);
    }
    config_unref(c);
    config_errors_free(&errs);
}

static void
fails(const char *text, const char *want)
{
    struct config_errors errs;
    struct config *c = load(text, &errs);
    CHECK(c == NULL);
    bool found = false;
    for (size_t i = 0; i < errs.n; i++)
        found = found || strstr(errs.lines[i], want) != NULL;
    if (!found)
        fprintf(stderr, "  wanted \"%s\", got %zu errors%s%s\n", want, errs.n, errs.n ? ": " : "",
                errs.n ? errs.lines[0] : "");
    CHECK(found);
    config_unref(c);
    config_errors_free(&errs);
}

static void
test_errors(void)
{
    fails("[dns]\ndnsbl = bl.test*x\n" MINIMAL, "t.conf:2: dnsbl: bad weight");
    fails("[dns]\ndnsbl = bl.test=127.0.0.300\n" MINIMAL, "t.conf:2: dnsbl: bad reply filter");
    fails("[dns]\nservers = 127.0.0.1:5353 resolver.example\n" MINIMAL,
          "t.conf:2: servers: bad server 'resolver.example'");
    fails("[dns]\nservers = 127.0.0.1:99999\n" MINIMAL, "t.conf:2: servers: bad server");
    fails("[dns]\ndnsbl_allowlist_threshold = 5\n" MINIMAL,
          "t.conf:2: dnsbl_allowlist_threshold: must be 0 (off) or a negative score");
    fails("[dns]\nfcrdns = maybe\n" MINIMAL, "t.conf:2: fcrdns");
    fails(MINIMAL "[listener i]\nprotocol = imap\nlisten = 127.0.0.1:1143\ntls = none\n"
                  "backend = b\ndns_checks = enforce\n",
          "dns_checks: [listener i]: enforce is for SMTP listeners");
}

int
main(void)
{
    test_defaults();
    test_full();
    test_errors();
    return test_finish("test_config_dns");
}
