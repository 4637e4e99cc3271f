/*
 * test_proxy_proto.c: PROXY protocol v1/v2 headers (proxy_proto.h), byte for byte.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxy_proto.h"
#include "test.h"

static struct sockaddr_in
v4(const char *ip, unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_in6
v6(const char *ip, unsigned port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

static void
test_v1(void)
{
    struct sockaddr_in s = v4("192.0.2.7", 40000), d = v4("203.0.113.1", 993);
    char out[PROXY_V1_MAX + 1];
    size_t n = proxy_v1_build(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&d);
    out[n] = '\0';
    CHECK_STR(out, "PROXY TCP4 192.0.2.7 203.0.113.1 40000 993\r\n");
    struct sockaddr_in6 s6 = v6("2001:db8::7", 1), d6 = v6("2001:db8::1", 25);
    n = proxy_v1_build(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d6);
    out[n] = '\0';
    CHECK_STR(out, "PROXY TCP6 2001:db8::7 2001:db8::1 1 25\r\n");
    /* mixed families or an unknown address: nothing, never "PROXY UNKNOWN" (the backend would
     * take moat's own address as the client's) */
    CHECK(proxy_v1_build(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d) == 0);
    struct sockaddr_storage unspec = {.ss_family = AF_UNSPEC};
    CHECK(proxy_v1_build(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&unspec) == 0);
    CHECK(proxy_v1_build(out, sizeof(out), (struct sockaddr *)&unspec, (struct sockaddr *)&d) == 0);
    /* IPv4-mapped IPv6 is sent as IPv4 */
    struct sockaddr_in6 m = v6("::ffff:192.0.2.9", 5);
    n = proxy_v1_build(out, sizeof(out), (struct sockaddr *)&m, (struct sockaddr *)&d);
    out[n] = '\0';
    CHECK_STR(out, "PROXY TCP4 192.0.2.9 203.0.113.1 5 993\r\n");
    /* too small a buffer: nothing */
    CHECK(proxy_v1_build(out, 10, (struct sockaddr *)&s, (struct sockaddr *)&d) == 0);
}

static void
test_v2(void)
{
    struct sockaddr_in s = v4("192.0.2.7", 40000), d = v4("203.0.113.1", 993);
    unsigned char out[PROXY_V2_MAX];
    size_t n = proxy_v2_build(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&d, NULL);
    static const unsigned char want[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                         0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C, 192,  0,    2,    7,
                                         203,  0,    113,  1,    0x9C, 0x40, 0x03, 0xE1};
    CHECK(n == sizeof(want));
    CHECK(memcmp(out, want, sizeof(want)) == 0);

    struct proxy_tls_info tls = {true, "TLSv1.3", "TLS13-AES128-GCM-SHA256"};
    n = proxy_v2_build(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&d, &tls);
    size_t body = ((size_t)out[14] << 8) | out[15];
    CHECK(n == 16 + body);
    CHECK(out[28] == 0x20); /* PP2_TYPE_SSL right after the addresses */
    size_t ssl_len = ((size_t)out[29] << 8) | out[30];
    CHECK(31 + ssl_len == n);
    CHECK(out[31] == 0x01);                                              /* PP2_CLIENT_SSL */
    CHECK(out[32] == 0 && out[33] == 0 && out[34] == 0 && out[35] == 0); /* verify ok */
    CHECK(out[36] == 0x21 && out[38] == 7 && memcmp(out + 39, "TLSv1.3", 7) == 0);

    struct sockaddr_in6 s6 = v6("2001:db8::7", 1), d6 = v6("2001:db8::1", 25);
    n = proxy_v2_build(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d6, NULL);
    CHECK(n == 16 + 36 && out[13] == 0x21 && out[15] == 36);
    CHECK(proxy_v2_build(out, 20, (struct sockaddr *)&s, (struct sockaddr *)&d, NULL) == 0);
    /* never UNSPEC: an unknown or mixed-family address builds nothing */
    struct sockaddr_storage unspec = {.ss_family = AF_UNSPEC};
    CHECK(proxy_v2_build(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&unspec,
                         &tls) == 0);
    CHECK(proxy_v2_build(out, sizeof(out), (struct sockaddr *)&unspec, (struct sockaddr *)&d,
                         NULL) == 0);
    CHECK(proxy_v2_build(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d, NULL) ==
          0);
}

int
main(void)
{
    test_v1();
    test_v2();
    return test_finish("test_proxy_proto");
}
