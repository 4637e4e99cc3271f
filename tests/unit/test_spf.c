/*
 * test_spf.c: the SPF evaluator against a fake resolver: each result (pass, fail, softfail,
 * neutral, none, temperror, permerror), include/redirect/mx/a/exists/ip6, macros, the 10-lookup
 * and void-lookup limits, loops, and the pending/re-run protocol the real driver uses.
 */
#include <arpa/inet.h>

#include "spf.h"
#include "test.h"

struct fake_rr {
    enum spf_qtype t;
    const char *name;
    enum spf_rcode rc;
    const char *v[4]; /* TXT strings, MX names or addresses */
};

static const struct fake_rr zone[] = {
    {SPF_Q_TXT, "pass.test", SPF_R_OK, {"v=spf1 ip4:192.0.2.0/24 -all", "other text"}},
    {SPF_Q_TXT, "fail.test", SPF_R_OK, {"v=spf1 -all"}},
    {SPF_Q_TXT, "soft.test", SPF_R_OK, {"v=spf1 ~all"}},
    {SPF_Q_TXT, "neutral.test", SPF_R_OK, {"v=spf1 ?all"}},
    {SPF_Q_TXT, "nospf.test", SPF_R_OK, {"hello"}},
    {SPF_Q_TXT, "temp.test", SPF_R_TEMP, {NULL}},
    {SPF_Q_TXT, "two.test", SPF_R_OK, {"v=spf1 -all", "v=spf1 +all"}},
    {SPF_Q_TXT, "syntax.test", SPF_R_OK, {"v=spf1 ip4:300.1.1.1 -all"}},
    {SPF_Q_TXT, "unknown.test", SPF_R_OK, {"v=spf1 foo:bar -all"}},
    {SPF_Q_TXT, "inc.test", SPF_R_OK, {"v=spf1 include:pass.test -all"}},
    {SPF_Q_TXT, "incnone.test", SPF_R_OK, {"v=spf1 include:nospf.test -all"}},
    {SPF_Q_TXT, "redir.test", SPF_R_OK, {"v=spf1 redirect=fail.test"}},
    {SPF_Q_TXT, "loop.test", SPF_R_OK, {"v=spf1 include:loop.test -all"}},
    {SPF_Q_TXT, "loop2.test", SPF_R_OK, {"v=spf1 redirect=loop3.test"}},
    {SPF_Q_TXT, "loop3.test", SPF_R_OK, {"v=spf1 redirect=loop2.test"}},
    {SPF_Q_TXT,
     "many.test",
     SPF_R_OK,
     {"v=spf1 a:a1.test a:a2.test a:a3.test a:a4.test a:a5.test a:a6.test a:a7.test a:a8.test "
      "a:a9.test a:a10.test a:a11.test -all"}},
    {SPF_Q_TXT, "voids.test", SPF_R_OK, {"v=spf1 a:v1.test a:v2.test a:v3.test -all"}},
    {SPF_Q_TXT, "mx.test", SPF_R_OK, {"v=spf1 mx -all"}},
    {SPF_Q_MX, "mx.test", SPF_R_OK, {"mx1.mx.test", "mx2.mx.test"}},
    {SPF_Q_A, "mx2.mx.test", SPF_R_OK, {"198.51.100.9"}},
    {SPF_Q_TXT, "a.test", SPF_R_OK, {"v=spf1 a/24 a:other.test -all"}},
    {SPF_Q_A, "a.test", SPF_R_OK, {"203.0.113.1"}},
    {SPF_Q_TXT, "exists.test", SPF_R_OK, {"v=spf1 exists:%{i}.%{l}.ex.test -all"}},
    {SPF_Q_A, "198.51.100.77.bob.ex.test", SPF_R_OK, {"127.0.0.2"}},
    {SPF_Q_TXT, "v6.test", SPF_R_OK, {"v=spf1 ip6:2001:db8::/32 -all"}},
    {SPF_Q_TXT, "temprec.test", SPF_R_OK, {"v=spf1 a:tempa.test -all"}},
    {SPF_Q_A, "tempa.test", SPF_R_TEMP, {NULL}},
    {SPF_Q_TXT, "case.test", SPF_R_OK, {"V=SPF1 IP4:192.0.2.1 -ALL"}},
    {SPF_Q_TXT, "dupredir.test", SPF_R_OK, {"v=spf1 redirect=a.test redirect=b.test"}},
    {SPF_Q_TXT, "redirnone.test", SPF_R_OK, {"v=spf1 redirect=nospf.test"}},
};

static unsigned fake_queries;
static bool fake_pending_mode; /* answer only what was "fetched" */
static char fetched[32][300];
static size_t nfetched;
static struct dns_addr addrs[4];

static enum spf_rcode
fake_lookup(void *arg, enum spf_qtype t, const char *name, struct spf_rrset *out)
{
    fake_queries++;
    if (fake_pending_mode) {
        char key[310];
        snprintf(key, sizeof(key), "%d %s", (int)t, name);
        bool have = false;
        for (size_t i = 0; i < nfetched; i++)
            have = have || strcmp(fetched[i], key) == 0;
        if (!have)
            return SPF_R_PENDING;
    }
    int k;
    if (t == SPF_Q_A && sscanf(name, "a%d.test", &k) == 1) { /* a1.test .. a11.test */
        dns_addr_parse("10.0.0.1", &addrs[0]);
        out->n = 1;
        out->addrs = addrs;
        return SPF_R_OK;
    }
    for (size_t i = 0; i < ARRAY_SIZE(zone); i++) {
        if (zone[i].t != t || strcmp(zone[i].name, name) != 0)
            continue;
        if (zone[i].rc != SPF_R_OK)
            return zone[i].rc;
        size_t n = 0;
        while (n < 4 && zone[i].v[n] != NULL)
            n++;
        out->n = n;
        if (t == SPF_Q_A || t == SPF_Q_AAAA) {
            for (size_t j = 0; j < n; j++)
                dns_addr_parse(zone[i].v[j], &addrs[j]);
            out->addrs = addrs;
        } else {
            out->strs = zone[i].v;
        }
        return SPF_R_OK;
    }
    return SPF_R_NONE;
}

static enum spf_result
run(const char *ip, const char *sender, struct spf_outcome *o)
{
    struct spf_resolver r = {fake_lookup, NULL};
    struct spf_request q;
    dns_addr_parse(ip, &q.ip);
    q.sender = sender;
    q.domain = strchr(sender, '@') + 1;
    q.helo = "client.test";
    return spf_check(&r, &q, o);
}

static void
test_results(void)
{
    struct spf_outcome o;
    CHECK(run("192.0.2.9", "a@pass.test", &o) == SPF_PASS);
    CHECK(strstr(o.why, "ip4:192.0.2.0/24") != NULL);
    CHECK(run("198.51.100.1", "a@pass.test", &o) == SPF_FAIL);
    CHECK(run("198.51.100.1", "a@fail.test", &o) == SPF_FAIL);
    CHECK(run("198.51.100.1", "a@soft.test", &o) == SPF_SOFTFAIL);
    CHECK(run("198.51.100.1", "a@neutral.test", &o) == SPF_NEUTRAL);
    CHECK(run("198.51.100.1", "a@nospf.test", &o) == SPF_NONE);
    CHECK(run("198.51.100.1", "a@nxdomain.test", &o) == SPF_NONE);
    CHECK(run("198.51.100.1", "a@bad_..domain", &o) == SPF_NONE);
    CHECK(run("198.51.100.1", "a@temp.test", &o) == SPF_TEMPERROR);
    CHECK(run("198.51.100.1", "a@two.test", &o) == SPF_PERMERROR);
    CHECK(run("198.51.100.1", "a@syntax.test", &o) == SPF_PERMERROR);
    CHECK(run("198.51.100.1", "a@unknown.test", &o) == SPF_PERMERROR);
    CHECK(run("192.0.2.1", "a@case.test", &o) == SPF_PASS);
    CHECK(run("192.0.2.1", "a@dupredir.test", &o) == SPF_PERMERROR);
    CHECK(run("192.0.2.1", "a@temprec.test", &o) == SPF_TEMPERROR);
}

static void
test_mechanisms(void)
{
    struct spf_outcome o;
    CHECK(run("192.0.2.9", "a@inc.test", &o) == SPF_PASS);
    CHECK(run("198.51.100.1", "a@inc.test", &o) == SPF_FAIL);
    CHECK(run("198.51.100.1", "a@incnone.test", &o) == SPF_PERMERROR);
    CHECK(run("192.0.2.9", "a@redir.test", &o) == SPF_FAIL);
    CHECK(run("192.0.2.9", "a@redirnone.test", &o) == SPF_PERMERROR);
    CHECK(run("198.51.100.9", "a@mx.test", &o) == SPF_PASS);
    CHECK(run("198.51.100.10", "a@mx.test", &o) == SPF_FAIL);
    CHECK(run("203.0.113.200", "a@a.test", &o) == SPF_PASS);
    CHECK(run("203.0.114.1", "a@a.test", &o) == SPF_FAIL);
    CHECK(run("198.51.100.77", "bob@exists.test", &o) == SPF_PASS);
    CHECK(run("198.51.100.78", "bob@exists.test", &o) == SPF_FAIL);
    CHECK(run("2001:db8::5", "a@v6.test", &o) == SPF_PASS);
    CHECK(run("2001:db9::5", "a@v6.test", &o) == SPF_FAIL);
    CHECK(run("192.0.2.1", "a@v6.test", &o) == SPF_FAIL);
}

static void
test_limits(void)
{
    struct spf_outcome o;
    CHECK(run("192.0.2.1", "a@loop.test", &o) == SPF_PERMERROR);
    CHECK(run("192.0.2.1", "a@loop2.test", &o) == SPF_PERMERROR);
    CHECK(run("192.0.2.1", "a@many.test", &o) == SPF_PERMERROR);
    CHECK(strstr(o.why, "too many DNS lookups") != NULL);
    CHECK(run("192.0.2.1", "a@voids.test", &o) == SPF_PERMERROR);
    CHECK(strstr(o.why, "void") != NULL);
}

static void
test_parse(void)
{
    struct spf_record r;
    const char *err;
    const char *good[] = {"v=spf1",
                          "v=spf1 -all",
                          "v=spf1 a mx/24 a:x.test//64 -ptr ?all",
                          "v=spf1 ip6:::1/128 exp=explain.%{d} foo=bar",
                          "v=spf1  ~all  ",
                          "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d}"};
    for (size_t i = 0; i < ARRAY_SIZE(good); i++)
        CHECK(spf_record_parse(good[i], strlen(good[i]), &r, &err) == 0);
    const char *bad[] = {
        "v=spf10",        "v=spf1 a:",       "v=spf1 ip4:1.2.3.4/33", "v=spf1 include",
        "v=spf1 all:x",   "v=spf1 a/",       "v=spf1 exists:%{z}",    "v=spf1 exp=a exp=b",
        "v=spf1 ip4:::1", "v=spf1 a:x\r\ny", "v=spf1 %{d}",           "v=spf1 a:%"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc = spf_record_parse(bad[i], strlen(bad[i]), &r, &err);
        if (rc == 0)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(rc != 0);
    }
}

/* The driver's protocol: re-run after each pending lookup is fetched. */
static void
test_pending(void)
{
    struct spf_outcome o;
    fake_pending_mode = true;
    nfetched = 0;
    int rounds = 0;
    while (run("198.51.100.9", "a@mx.test", &o) == SPF_PENDING && rounds++ < 20)
        snprintf(fetched[nfetched++], sizeof(fetched[0]), "%d %s", (int)o.need_type, o.need_name);
    CHECK(o.result == SPF_PASS);
    CHECK(rounds == 4); /* TXT, MX, A mx1, A mx2 */
    fake_pending_mode = false;
}

int
main(void)
{
    test_results();
    test_mechanisms();
    test_limits();
    test_parse();
    test_pending();
    return test_finish("test_spf");
}
