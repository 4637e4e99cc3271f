/*
 * test_dnscheck_pure.c: the pure parts of moat's DNS checks: name validation (including the
 * injected PTR "evil.example\r\nXCLIENT"), reverse names, HELO classification, DNSBL list specs
 * and scoring against the thresholds.
 */
#include <arpa/inet.h>

#include "dnsbl.h"
#include "dnsname.h"
#include "test.h"

static void
test_names(void)
{
    CHECK(dnsname_host_valid("mail.example.com", 16));
    CHECK(dnsname_host_valid("mail.example.com.", 17));
    CHECK(dnsname_host_valid("a-b.c9", 6));
    CHECK(!dnsname_host_valid("evil.example\r\nXCLIENT", 21));
    CHECK(!dnsname_host_valid("evil.example XCLIENT", 20));
    CHECK(!dnsname_host_valid("", 0));
    CHECK(!dnsname_host_valid(".", 1));
    CHECK(!dnsname_host_valid("a..b", 4));
    CHECK(!dnsname_host_valid("-a.b", 4));
    CHECK(!dnsname_host_valid("a-.b", 4));
    CHECK(!dnsname_host_valid("_spf.example", 12));
    CHECK(dnsname_domain_valid("_spf.example", 12));
    CHECK(!dnsname_host_valid("a\0b", 3));
    char label[70];
    memset(label, 'a', 64);
    label[64] = '\0';
    CHECK(!dnsname_host_valid(label, 64));
    CHECK(dnsname_host_valid(label, 63));
    char longname[300];
    for (int i = 0; i < 300; i++)
        longname[i] = i % 2 ? '.' : 'a';
    CHECK(dnsname_host_valid(longname, 253));
    CHECK(!dnsname_host_valid(longname, 255));
    CHECK(dnsname_equal("Mail.Example.COM.", "mail.example.com"));
    CHECK(!dnsname_equal("mail.example.com", "mail.example.co"));
}

static void
test_reverse(void)
{
    struct dns_addr a;
    char out[128];
    CHECK(dns_addr_parse("192.0.2.7", &a) == 0);
    CHECK(dnsname_reverse(&a, NULL, out, sizeof(out)) > 0);
    CHECK_STR(out, "7.2.0.192.in-addr.arpa");
    CHECK(dnsname_reverse(&a, "bl.test", out, sizeof(out)) > 0);
    CHECK_STR(out, "7.2.0.192.bl.test");
    CHECK(dnsname_reverse(&a, "bl.test", out, 10) == -1);
    CHECK(dns_addr_parse("2001:db8::1", &a) == 0);
    CHECK(dnsname_reverse(&a, NULL, out, sizeof(out)) > 0);
    CHECK_STR(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    struct dns_addr b;
    dns_addr_parse("2001:db8::ffff", &b);
    CHECK(dns_addr_prefix_match(&a, &b, 64));
    CHECK(!dns_addr_prefix_match(&a, &b, 128));
    dns_addr_parse("192.0.2.7", &a);
    dns_addr_parse("192.0.2.200", &b);
    CHECK(dns_addr_prefix_match(&a, &b, 24));
    CHECK(dns_addr_prefix_match(&a, &b, 0));
    CHECK(!dns_addr_prefix_match(&a, &b, 25));
    CHECK(!dns_addr_prefix_match(&a, &b, 33));
}

static void
test_helo(void)
{
    struct dns_addr a;
    CHECK(dnsname_helo_classify("mx.example.com", 14, &a) == HELO_NAME);
    CHECK(dnsname_helo_classify("localhost", 9, &a) == HELO_BARE_NAME);
    CHECK(dnsname_helo_classify("[192.0.2.1]", 11, &a) == HELO_LITERAL && a.family == AF_INET);
    CHECK(dnsname_helo_classify("[IPv6:2001:db8::1]", 18, &a) == HELO_LITERAL);
    CHECK(dnsname_helo_classify("[2001:db8::1]", 13, &a) == HELO_INVALID);
    CHECK(dnsname_helo_classify("192.0.2.1", 9, &a) == HELO_INVALID);
    CHECK(dnsname_helo_classify("bad_name.example", 16, &a) == HELO_INVALID);
    CHECK(dnsname_helo_classify("[1.2.3]", 7, &a) == HELO_INVALID);
    CHECK(dnsname_helo_classify("[", 1, &a) == HELO_INVALID);
}

static uint32_t
ip(const char *s)
{
    struct in_addr a;
    inet_pton(AF_INET, s, &a);
    return a.s_addr;
}

static void
test_dnsbl_parse(void)
{
    struct dnsbl_list l;
    const char *err = NULL;
    CHECK(dnsbl_parse("zen.test=127.0.0.[2..11]*3, bl.test*2 wl.test=127.0.[0..255].[0..255]*-5",
                      &l, &err) != 0); /* only the last octet may be a range */
    CHECK(dnsbl_parse("zen.test=127.0.0.[2..11]*3, bl.test*2 wl.test=127.0.10.[0..255]*-5", &l,
                      &err) == 0);
    CHECK(l.n == 3);
    CHECK_STR(l.zones[0].name, "zen.test");
    CHECK(l.zones[0].weight == 3 && l.zones[0].nranges == 1);
    CHECK(l.zones[1].weight == 2 && l.zones[1].nranges == 0);
    CHECK(l.zones[2].weight == -5);
    CHECK(dnsbl_parse("a.test=127.0.0.2..11;127.0.0.20*1", &l, &err) == 0 &&
          l.zones[0].nranges == 2);
    CHECK(dnsbl_parse("a.test=127.0.0.[2;4;6..7]", &l, &err) == 0 && l.zones[0].nranges == 3);
    CHECK(dnsbl_parse("", &l, &err) == 0 && l.n == 0);
    CHECK(dnsbl_parse("a.test*x", &l, &err) != 0);
    CHECK(dnsbl_parse("a.test=127.0.0.300", &l, &err) != 0);
    CHECK(dnsbl_parse("a.test=127.0.0.5..2", &l, &err) != 0);
    CHECK(dnsbl_parse("a.test=", &l, &err) != 0);
    CHECK(dnsbl_parse("bad\rzone", &l, &err) != 0);
    CHECK(dnsbl_parse("a.test=127.0.0.[2", &l, &err) != 0);
}

static void
test_dnsbl_score(void)
{
    struct dnsbl_list l;
    const char *err;
    CHECK(dnsbl_parse("bl1.test=127.0.0.[2..11]*2 bl2.test*2 wl.test*-10", &l, &err) == 0);
    uint32_t listed[] = {ip("127.0.0.2")}, filtered[] = {ip("127.0.0.20")},
             refused[] = {ip("127.255.255.254")}, hijack[] = {ip("192.0.2.1")};
    CHECK(dnsbl_classify(&l.zones[0], listed, 1) == DNSBL_LISTED);
    CHECK(dnsbl_classify(&l.zones[0], filtered, 1) == DNSBL_NOT_LISTED);
    CHECK(dnsbl_classify(&l.zones[0], refused, 1) == DNSBL_ERROR_CODE);
    CHECK(dnsbl_classify(&l.zones[1], refused, 1) == DNSBL_ERROR_CODE);
    CHECK(dnsbl_classify(&l.zones[1], hijack, 1) == DNSBL_ERROR_CODE);
    CHECK(dnsbl_classify(&l.zones[1], filtered, 1) == DNSBL_LISTED);
    CHECK(dnsbl_classify(&l.zones[1], NULL, 0) == DNSBL_NOT_LISTED);

    struct dnsbl_score sc;
    dnsbl_score_init(&sc);
    dnsbl_score_add(&sc, &l.zones[0], DNSBL_LISTED);
    CHECK(dnsbl_verdict(&sc, 3, 0) == DNSBL_PASS);
    dnsbl_score_add(&sc, &l.zones[1], DNSBL_LISTED);
    CHECK(sc.score == 4 && dnsbl_verdict(&sc, 3, 0) == DNSBL_BLOCK);
    CHECK_STR(sc.top, "bl1.test");
    dnsbl_score_add(&sc, &l.zones[2], DNSBL_LISTED);
    CHECK(sc.score == -6 && dnsbl_verdict(&sc, 3, -1) == DNSBL_ALLOWLIST);
    CHECK(dnsbl_verdict(&sc, 3, 0) == DNSBL_PASS); /* allowlisting off at 0 */

    dnsbl_score_init(&sc);
    dnsbl_score_add(&sc, &l.zones[0], DNSBL_ERROR_CODE);
    dnsbl_score_add(&sc, &l.zones[1], DNSBL_TEMPFAIL);
    CHECK(sc.score == 0 && sc.errors == 1 && sc.tempfail == 1 && sc.top == NULL);
    CHECK(dnsbl_verdict(&sc, 1, -1) == DNSBL_PASS);
}

int
main(void)
{
    test_names();
    test_reverse();
    test_helo();
    test_dnsbl_parse();
    test_dnsbl_score();
    return test_finish("test_dnscheck_pure");
}
