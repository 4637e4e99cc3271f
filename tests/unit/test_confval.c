/*
 * test_confval.c: unit tests for the configuration value parsers: durations, rates, sizes,
 * booleans, numbers, addresses, CIDRs, CIDR list files and matching. Each parser gets its happy
 * path, its edges (zero, maxima, overflow by one) and the exact error text of each bad input.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "confval.h"
#include "test.h"

static const char *err;

static uint32_t
dur(const char *s)
{
    uint32_t v = 12345;
    err = NULL;
    CHECK(confval_duration_ms(s, &v, &err) == 0);
    CHECK(err == NULL);
    return v;
}

static const char *
dur_err(const char *s)
{
    uint32_t v = 12345;
    err = NULL;
    CHECK(confval_duration_ms(s, &v, &err) == -1);
    CHECK(v == 12345);
    return err;
}

static void
test_durations(void)
{
    CHECK(dur("250ms") == 250);
    CHECK(dur("30s") == 30000);
    CHECK(dur("5m") == 300000);
    CHECK(dur("1h") == 3600000);
    CHECK(dur("2d") == 172800000);
    CHECK(dur("0") == 0);
    CHECK(dur("0s") == 0);
    CHECK(dur("000") == 0);
    CHECK(dur("4294967295ms") == UINT32_MAX);
    CHECK(dur("4294967s") == 4294967000u);
    CHECK(dur("49d") == 49u * 86400000u);
    CHECK_STR(dur_err("4294967296ms"), "too large (at most 49d)");
    CHECK_STR(dur_err("4294968s"), "too large (at most 49d)");
    CHECK_STR(dur_err("50d"), "too large (at most 49d)");
    CHECK_STR(dur_err("99999999999999999999999999999s"), "too large (at most 49d)");
    CHECK_STR(dur_err("30"), "missing unit (ms, s, m, h, d)");
    CHECK_STR(dur_err("5x"), "unknown unit 'x'");
    CHECK_STR(dur_err("5 s"), "unknown unit ' s'");
    CHECK_STR(dur_err("5sec"), "unknown unit 'sec'");
    CHECK_STR(dur_err("5S"), "unknown unit 'S'");
    CHECK_STR(dur_err("1h30m"), "unknown unit 'h30m'");
    CHECK_STR(dur_err("5\x01"), "unknown unit '?'");
    CHECK_STR(dur_err("5abcdefghijklmnopqrstuvwxyz"), "unknown unit 'abcdefghijklmnop...'");
    CHECK_STR(dur_err(""), "empty value");
    CHECK_STR(dur_err("s"), "expected a number with a unit (ms, s, m, h, d)");
    CHECK_STR(dur_err("-5s"), "expected a number with a unit (ms, s, m, h, d)");
    CHECK_STR(dur_err("+5s"), "expected a number with a unit (ms, s, m, h, d)");
    CHECK_STR(dur_err(" 5s"), "expected a number with a unit (ms, s, m, h, d)");
}

static void
test_rates(void)
{
    struct rate r = {7, 7};

    CHECK(confval_rate("100/1m", &r, &err) == 0);
    CHECK(r.count == 100 && r.window_ms == 60000);
    CHECK(confval_rate("60/1m", &r, &err) == 0);
    CHECK(r.count == 60 && r.window_ms == 60000);
    CHECK(confval_rate("1/250ms", &r, &err) == 0);
    CHECK(r.count == 1 && r.window_ms == 250);
    CHECK(confval_rate("4294967295/1d", &r, &err) == 0);
    CHECK(r.count == UINT32_MAX && r.window_ms == 86400000);
    CHECK(confval_rate("0", &r, &err) == 0);
    CHECK(r.count == 0 && r.window_ms == 0);
    r.count = 9;
    CHECK(confval_rate("0/1h", &r, &err) == 0);
    CHECK(r.count == 0 && r.window_ms == 0);
    CHECK(confval_rate("4294967296/1m", &r, &err) == -1);
    CHECK_STR(err, "count too large");
    CHECK(confval_rate("10/0", &r, &err) == -1);
    CHECK_STR(err, "window must not be 0");
    CHECK(confval_rate("10/5x", &r, &err) == -1);
    CHECK_STR(err, "unknown unit 'x'");
    CHECK(confval_rate("10/60", &r, &err) == -1);
    CHECK_STR(err, "missing unit (ms, s, m, h, d)");
    CHECK(confval_rate("10/", &r, &err) == -1);
    CHECK_STR(err, "empty value");
    CHECK(confval_rate("10", &r, &err) == -1);
    CHECK_STR(err, "expected COUNT/DURATION such as 100/1m, or 0 for unlimited");
    CHECK(confval_rate("/1m", &r, &err) == -1);
    CHECK(confval_rate("", &r, &err) == -1);
    CHECK(confval_rate("1/1m/1m", &r, &err) == -1);
    CHECK(confval_rate("-1/1m", &r, &err) == -1);
}

static void
test_sizes(void)
{
    size_t v = 0;

    CHECK(confval_size("32k", &v, &err) == 0 && v == 32768);
    CHECK(confval_size("32K", &v, &err) == 0 && v == 32768);
    CHECK(confval_size("10M", &v, &err) == 0 && v == 10485760);
    CHECK(confval_size("10m", &v, &err) == 0 && v == 10485760);
    CHECK(confval_size("2g", &v, &err) == 0 && v == 2147483648u);
    CHECK(confval_size("2G", &v, &err) == 0 && v == 2147483648u);
    CHECK(confval_size("10240000", &v, &err) == 0 && v == 10240000);
    CHECK(confval_size("0", &v, &err) == 0 && v == 0);
    CHECK(confval_size("18446744073709551614", &v, &err) == 0 && v == SIZE_MAX - 1);
    CHECK(confval_size("18446744073709551616", &v, &err) == -1);
    CHECK_STR(err, "too large");
    CHECK(confval_size("17179869184G", &v, &err) == -1);
    CHECK_STR(err, "too large");
    CHECK(confval_size("10MB", &v, &err) == -1);
    CHECK_STR(err, "unknown unit 'MB'");
    CHECK(confval_size("10t", &v, &err) == -1);
    CHECK_STR(err, "unknown unit 't'");
    CHECK(confval_size("", &v, &err) == -1);
    CHECK_STR(err, "empty value");
    CHECK(confval_size("k", &v, &err) == -1);
    CHECK_STR(err, "expected a number of bytes, optionally with k, m or g");
    CHECK(confval_size("-1", &v, &err) == -1);
}

static void
test_bools_and_uints(void)
{
    static const char *const yes[] = {"yes", "YES", "true", "True", "on", "1"};
    static const char *const no[] = {"no", "No", "false", "FALSE", "off", "0"};
    bool b;
    uint32_t u = 0;

    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        b = false;
        CHECK(confval_bool(yes[i], &b, &err) == 0 && b);
        b = true;
        CHECK(confval_bool(no[i], &b, &err) == 0 && !b);
    }
    CHECK(confval_bool("y", &b, &err) == -1);
    CHECK_STR(err, "expected yes or no");
    CHECK(confval_bool("", &b, &err) == -1);
    CHECK(confval_bool("yess", &b, &err) == -1);
    CHECK(confval_bool("2", &b, &err) == -1);

    CHECK(confval_uint("0", 10, &u, &err) == 0 && u == 0);
    CHECK(confval_uint("10", 10, &u, &err) == 0 && u == 10);
    CHECK(confval_uint("4294967295", UINT32_MAX, &u, &err) == 0 && u == UINT32_MAX);
    CHECK(confval_uint("11", 10, &u, &err) == -1);
    CHECK_STR(err, "must be at most 10");
    CHECK(confval_uint("4294967296", UINT32_MAX, &u, &err) == -1);
    CHECK_STR(err, "must be at most 4294967295");
    CHECK(confval_uint("999999999999999999999999", UINT32_MAX, &u, &err) == -1);
    CHECK(confval_uint("1x", 10, &u, &err) == -1);
    CHECK_STR(err, "not a number");
    CHECK(confval_uint("-1", 10, &u, &err) == -1);
    CHECK_STR(err, "not a number");
    CHECK(confval_uint("", 10, &u, &err) == -1);
    CHECK_STR(err, "empty value");
}

static const char *
addr_str(const char *s)
{
    static char buf[CONFVAL_ADDR_STRLEN];
    struct sockaddr_storage ss;
    socklen_t len = 0;

    err = NULL;
    if (confval_addr(s, &ss, &len, &err) != 0)
        return err;
    CHECK(len ==
          (ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
    return confval_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
}

static void
test_addresses(void)
{
    struct sockaddr_storage ss;
    socklen_t len = 99;
    char buf[CONFVAL_ADDR_STRLEN];

    CHECK_STR(addr_str("127.0.0.1:25"), "127.0.0.1:25");
    CHECK_STR(addr_str("[::1]:993"), "[::1]:993");
    CHECK_STR(addr_str("[2001:db8::5]:65535"), "[2001:db8::5]:65535");
    CHECK_STR(addr_str("*:25"), "0.0.0.0:25");
    CHECK_STR(addr_str("0.0.0.0:1"), "0.0.0.0:1");
    CHECK_STR(addr_str("[::]:587"), "[::]:587");
    CHECK_STR(addr_str("localhost:25"), "not a numeric address");
    CHECK_STR(addr_str("mail.example.com:25"), "not a numeric address");
    CHECK_STR(addr_str("1.2.3:25"), "not a numeric address");
    CHECK_STR(addr_str("1.2.3.256:25"), "not a numeric address");
    CHECK_STR(addr_str(":25"), "not a numeric address");
    CHECK_STR(addr_str("127.0.0.1"), "missing port (host:port)");
    CHECK_STR(addr_str("127.0.0.1:"), "missing port");
    CHECK_STR(addr_str("127.0.0.1:0"), "port must be a number from 1 to 65535");
    CHECK_STR(addr_str("127.0.0.1:65536"), "port must be a number from 1 to 65535");
    CHECK_STR(addr_str("127.0.0.1:99999999999999999999"), "port must be a number from 1 to 65535");
    CHECK_STR(addr_str("127.0.0.1:25x"), "port must be a number from 1 to 65535");
    CHECK_STR(addr_str("127.0.0.1:-25"), "port must be a number from 1 to 65535");
    CHECK_STR(addr_str("::1:25"), "an IPv6 address needs brackets: [::1]:25");
    CHECK_STR(addr_str("[::1]"), "missing port");
    CHECK_STR(addr_str("[::1]25"), "missing port");
    CHECK_STR(addr_str("[::1:25"), "missing ']' after IPv6 address");
    CHECK_STR(addr_str("[127.0.0.1]:25"), "not a numeric IPv6 address");
    CHECK_STR(addr_str("[fe80::1%eth0]:25"), "not a numeric IPv6 address");
    CHECK_STR(addr_str("[]:25"), "not a numeric IPv6 address");
    CHECK_STR(addr_str(""), "missing port (host:port)");
    CHECK_STR(addr_str("[1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd]:1"),
              "not a numeric IPv6 address");
    CHECK_STR(addr_str("1111111111111111111111111111111111111111111111111111111111111111111:1"),
              "not a numeric address");
    CHECK(confval_addr("nope", &ss, &len, &err) == -1 && len == 99);
    ss.ss_family = AF_UNIX;
    CHECK_STR(confval_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), "?");
}

static const char *
cidr_err(const char *s)
{
    struct cidr c;
    err = NULL;
    CHECK(confval_cidr(s, &c, &err) == -1);
    return err;
}

static void
test_cidrs(void)
{
    struct cidr c;

    CHECK(confval_cidr("10.0.0.0/8", &c, &err) == 0);
    CHECK(c.family == AF_INET && c.prefix == 8 && c.addr[0] == 10);
    CHECK(confval_cidr("2001:db8::/32", &c, &err) == 0);
    CHECK(c.family == AF_INET6 && c.prefix == 32 && c.addr[0] == 0x20 && c.addr[3] == 0xb8);
    CHECK(confval_cidr("192.0.2.7", &c, &err) == 0 && c.prefix == 32);
    CHECK(confval_cidr("2001:db8::7", &c, &err) == 0 && c.prefix == 128);
    CHECK(confval_cidr("0.0.0.0/0", &c, &err) == 0 && c.prefix == 0);
    CHECK(confval_cidr("::/0", &c, &err) == 0 && c.prefix == 0 && c.family == AF_INET6);
    CHECK(confval_cidr("10.1.2.128/25", &c, &err) == 0 && c.prefix == 25);
    CHECK(confval_cidr("10.0.0.0/008", &c, &err) == 0 && c.prefix == 8);
    CHECK_STR(cidr_err("10.0.0.1/8"), "address has bits set beyond the /8 prefix");
    CHECK_STR(cidr_err("10.1.2.129/25"), "address has bits set beyond the /25 prefix");
    CHECK_STR(cidr_err("2001:db8::1/64"), "address has bits set beyond the /64 prefix");
    CHECK_STR(cidr_err("1.0.0.0/0"), "address has bits set beyond the /0 prefix");
    CHECK_STR(cidr_err("10.0.0.0/33"), "prefix length must be 0 to 32");
    CHECK_STR(cidr_err("::/129"), "prefix length must be 0 to 128");
    CHECK_STR(cidr_err("10.0.0.0/"), "prefix length must be 0 to 32");
    CHECK_STR(cidr_err("10.0.0.0/-1"), "prefix length must be 0 to 32");
    CHECK_STR(cidr_err("10.0.0.0/8/8"), "prefix length must be 0 to 32");
    CHECK_STR(cidr_err("10.0.0.0/99999999999999999999"), "prefix length must be 0 to 32");
    CHECK_STR(cidr_err("10.0.0/8"), "not a numeric address");
    CHECK_STR(cidr_err("example.com"), "not a numeric address");
    CHECK_STR(cidr_err(""), "not a numeric address");
    CHECK_STR(cidr_err("/8"), "not a numeric address");
    CHECK_STR(cidr_err("[::1]"), "not a numeric address");
}

static struct sockaddr_storage
sa(const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        CHECK(inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        CHECK(inet_pton(AF_INET, ip, &s4->sin_addr) == 1);
    }
    return ss;
}

static bool
match(const struct cidr_list *l, const char *ip)
{
    struct sockaddr_storage ss = sa(ip);
    return cidr_list_match(l, (struct sockaddr *)&ss);
}

static void
list_add(struct cidr_list *l, const char *s)
{
    struct cidr c;
    CHECK(confval_cidr(s, &c, &err) == 0);
    CHECK(cidr_list_add(l, &c) == 0);
}

static void
test_matching(void)
{
    struct cidr_list l = {NULL, 0}, all = {NULL, 0}, copy;

    CHECK(!match(&l, "10.0.0.1"));
    list_add(&l, "10.0.0.0/8");
    list_add(&l, "192.0.2.7");
    list_add(&l, "198.51.100.128/25");
    list_add(&l, "2001:db8:1:2::/64");
    list_add(&l, "2001:db8:ff::1");
    CHECK(l.n == 5);
    CHECK(match(&l, "10.0.0.1"));
    CHECK(match(&l, "10.255.255.255"));
    CHECK(!match(&l, "11.0.0.0"));
    CHECK(!match(&l, "9.255.255.255"));
    CHECK(match(&l, "192.0.2.7"));
    CHECK(!match(&l, "192.0.2.6"));
    CHECK(match(&l, "198.51.100.128"));
    CHECK(match(&l, "198.51.100.255"));
    CHECK(!match(&l, "198.51.100.127"));
    CHECK(match(&l, "2001:db8:1:2::1"));
    CHECK(match(&l, "2001:db8:1:2:ffff:ffff:ffff:ffff"));
    CHECK(!match(&l, "2001:db8:1:3::"));
    CHECK(match(&l, "2001:db8:ff::1"));
    CHECK(!match(&l, "2001:db8:ff::2"));
    CHECK(match(&l, "::ffff:10.1.2.3")); /* v4-mapped matches the IPv4 entry */
    CHECK(!match(&l, "::ffff:11.1.2.3"));
    CHECK(!match(&l, "::a01:203")); /* not mapped: ::10.1.2.3 is IPv6 */

    list_add(&all, "0.0.0.0/0");
    CHECK(match(&all, "1.2.3.4") && match(&all, "255.255.255.255"));
    CHECK(!match(&all, "2001:db8::1"));
    list_add(&all, "::/0");
    CHECK(match(&all, "2001:db8::1") && match(&all, "::"));

    for (int i = 0; i < 100; i++) /* grows past several capacities */
        list_add(&all, "192.0.2.0/24");
    CHECK(all.n == 102);
    cidr_list_copy(&copy, &l);
    CHECK(copy.n == 5 && copy.items != l.items);
    list_add(&copy, "203.0.113.0/24"); /* a copy can grow */
    CHECK(match(&copy, "203.0.113.9") && !match(&l, "203.0.113.9"));
    cidr_list_free(&copy);
    cidr_list_copy(&copy, &(struct cidr_list){NULL, 0});
    CHECK(copy.n == 0 && copy.items == NULL);
    list_add(&copy, "203.0.113.0/24");
    CHECK(copy.n == 1);
    cidr_list_free(&copy);
    cidr_list_free(&l);
    cidr_list_free(&all);
    CHECK(l.n == 0 && l.items == NULL);
    struct sockaddr_storage un = {.ss_family = AF_UNIX};
    CHECK(!cidr_list_match(&l, (struct sockaddr *)&un));
}

static char *
write_temp(const char *content, size_t len)
{
    char *path = strdup("/tmp/moat-test-cidr-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, content, len) == (ssize_t)len);
    close(fd);
    return path;
}

static int
add_file(struct cidr_list *l, const char *content, size_t len, int *line_out)
{
    char *path = write_temp(content, len);
    int rc = cidr_list_add_file(l, path, &err, line_out);
    unlink(path);
    free(path);
    return rc;
}

static void
test_list_files(void)
{
    struct cidr_list l = {NULL, 0};
    const char good[] = "# trusted networks\n"
                        "10.0.0.0/8\n"
                        "\n"
                        "   192.0.2.1   # one host\n"
                        "\t2001:db8::/32\r\n"
                        "#10.9.9.9\n"
                        "198.51.100.0/24"; /* no final newline */
    char big[600];
    int line = -1;

    CHECK(add_file(&l, good, sizeof(good) - 1, &line) == 0);
    CHECK(l.n == 4);
    CHECK(match(&l, "10.2.3.4") && match(&l, "192.0.2.1") && match(&l, "2001:db8::9"));
    CHECK(match(&l, "198.51.100.1"));
    CHECK(!match(&l, "192.0.2.2"));
    cidr_list_free(&l);

    CHECK(add_file(&l, "10.0.0.0/8\n# x\n10.0.0.1/8\n", 26, &line) == -1);
    CHECK(line == 3);
    CHECK_STR(err, "address has bits set beyond the /8 prefix");
    cidr_list_free(&l);
    CHECK(add_file(&l, "\n\nexample.com\n", 14, &line) == -1);
    CHECK(line == 3);
    CHECK_STR(err, "not a numeric address");
    cidr_list_free(&l);
    CHECK(add_file(&l, "10.0.0.0/8 10.1.0.0/16\n", 23, &line) == -1);
    CHECK(line == 1);
    cidr_list_free(&l);
    CHECK(add_file(&l, "10.0.0.0/8\n1.2.3.4\0\n", 20, &line) == -1);
    CHECK(line == 2);
    CHECK_STR(err, "line too long or holds a NUL byte");
    cidr_list_free(&l);
    memset(big, ' ', sizeof(big));
    memcpy(big + sizeof(big) - 12, "10.0.0.0/8\n", 11);
    CHECK(add_file(&l, big, sizeof(big) - 1, &line) == -1);
    CHECK(line == 1);
    CHECK_STR(err, "line too long or holds a NUL byte");
    cidr_list_free(&l);
    CHECK(add_file(&l, "", 0, &line) == 0 && l.n == 0);

    CHECK(cidr_list_add_file(&l, "/nonexistent/moat-list", &err, &line) == -1);
    CHECK(line == 0);
    CHECK_STR(err, "No such file or directory");
    CHECK(cidr_list_add_file(&l, "/tmp", &err, &line) == -1);
    CHECK_STR(err, "not a regular file");
    CHECK(cidr_list_add_file(&l, "/dev/null", &err, &line) == -1);
    CHECK_STR(err, "not a regular file");
    cidr_list_free(&l);
}

int
main(void)
{
    test_durations();
    test_rates();
    test_sizes();
    test_bools_and_uints();
    test_addresses();
    test_cidrs();
    test_matching();
    test_list_files();
    return test_finish("test_confval");
}
