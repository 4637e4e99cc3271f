/*
 * test_proxy_parse.c: the PROXY header parser (proxy_parse.h): round trips with the builders,
 * partial input, every malformed shape refused, TLVs kept, input at the very end of a buffer.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "proxy_parse.h"
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

/* Parse s from an exact-size heap copy, so ASan sees any read past the end. */
static enum proxy_parse_result
parse(const void *s, size_t n, enum proxy_version accept, struct proxy_header *h, size_t *used)
{
    unsigned char *copy = malloc(n ? n : 1);
    memcpy(copy, s, n);
    enum proxy_parse_result r = proxy_parse(copy, n, accept, h, used);
    free(copy);
    return r;
}

static enum proxy_parse_result
parse_text(const char *s, struct proxy_header *h, size_t *used)
{
    return parse(s, strlen(s), PROXY_VERSION_ANY, h, used);
}

static void
test_v1(void)
{
    struct proxy_header h;
    size_t used;
    const char *line = "PROXY TCP4 192.0.2.7 203.0.113.1 40000 993\r\nEHLO x\r\n";
    CHECK(parse_text(line, &h, &used) == PP_OK);
    CHECK(used == strlen("PROXY TCP4 192.0.2.7 203.0.113.1 40000 993\r\n"));
    CHECK(h.version == PROXY_VERSION_V1 && !h.local);
    const struct sockaddr_in *src = (const struct sockaddr_in *)&h.src;
    struct sockaddr_in want = v4("192.0.2.7", 40000);
    CHECK(src->sin_family == AF_INET && src->sin_addr.s_addr == want.sin_addr.s_addr &&
          src->sin_port == want.sin_port);
    CHECK(parse_text("PROXY TCP6 2001:db8::7 2001:db8::1 1 25\r\n", &h, &used) == PP_OK);
    CHECK(h.src.ss_family == AF_INET6 && ntohs(((struct sockaddr_in6 *)&h.src)->sin6_port) == 1);
    CHECK(parse_text("PROXY UNKNOWN\r\n", &h, &used) == PP_OK && h.local && used == 15);
    CHECK(parse_text("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", &h, &used) == PP_OK && h.local);
    /* partial: every proper prefix of a valid line asks for more */
    const char *full = "PROXY TCP4 192.0.2.7 203.0.113.1 40000 993\r\n";
    for (size_t i = 1; i < strlen(full); i++)
        CHECK(parse(full, i, PROXY_VERSION_ANY, &h, &used) == PP_MORE);
    CHECK(parse("", 0, PROXY_VERSION_ANY, &h, &used) == PP_MORE);
}

static void
test_v1_bad(void)
{
    static const char *const bad[] = {
        "GET / HTTP/1.0\r\n",
        "EHLO x\r\n",
        "PROXY TCP4 192.0.2.7 203.0.113.1 40000 993\n",    /* bare LF */
        "PROXY TCP4 192.0.2.7 203.0.113.1 40000 993\rX",   /* CR not followed by LF */
        "PROXY TCP4  192.0.2.7 203.0.113.1 40000 993\r\n", /* double space */
        "PROXY TCP4 2001:db8::1 203.0.113.1 1 2\r\n",      /* family mismatch */
        "PROXY TCP6 192.0.2.7 203.0.113.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 203.0.113.1 65536 2\r\n", /* port range */
        "PROXY TCP4 192.0.2.7 203.0.113.1 01 2\r\n",    /* leading zero */
        "PROXY TCP4 192.0.2.7 203.0.113.1 -1 2\r\n",
        "PROXY TCP4 192.0.2.7 203.0.113.1 1\r\n", /* a field missing */
        "PROXY TCP4 192.0.2.7 203.0.113.1 1 2 3\r\n",
        "PROXY TCP5 192.0.2.7 203.0.113.1 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY TCP4 192.0.2.7\t203.0.113.1 1 2\r\n",
        "PROXY \r\n",
    };
    struct proxy_header h;
    size_t used;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_text(bad[i], &h, &used) != PP_BAD)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(parse_text(bad[i], &h, &used) == PP_BAD);
    }
    /* longer than 107 bytes without a CRLF: refused, not "more" */
    char longline[200];
    memset(longline, 'a', sizeof(longline));
    memcpy(longline, "PROXY UNKNOWN ", 14);
    CHECK(parse(longline, sizeof(longline), PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    CHECK(parse(longline, 106, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    CHECK(parse(longline, 105, PROXY_VERSION_ANY, &h, &used) == PP_MORE);
    /* a CR as byte 107: the line would be 108 bytes */
    longline[106] = '\r';
    longline[107] = '\n';
    CHECK(parse(longline, 108, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    /* exactly 107 bytes with the CRLF is fine */
    longline[105] = '\r';
    longline[106] = '\n';
    CHECK(parse(longline, 107, PROXY_VERSION_ANY, &h, &used) == PP_OK && used == 107);
    /* v1 where only v2 is accepted */
    CHECK(parse("PROXY UNKNOWN\r\n", 15, PROXY_VERSION_V2, &h, &used) == PP_BAD);
}

static void
test_v2(void)
{
    struct sockaddr_in s = v4("192.0.2.7", 40000), d = v4("203.0.113.1", 993);
    unsigned char out[PROXY_V2_MAX];
    struct proxy_tls_info tls = {.tls = true, .version = "TLSv1.3", .cipher = "X"};
    size_t n = proxy_v2_build(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&d, &tls);
    CHECK(n > 16);
    struct proxy_header h;
    size_t used;
    CHECK(parse(out, n, PROXY_VERSION_V2, &h, &used) == PP_OK && used == n);
    CHECK(h.version == PROXY_VERSION_V2 && !h.local && h.ssl);
    CHECK_STR(h.ssl_version, "TLSv1.3");
    CHECK(((struct sockaddr_in *)&h.src)->sin_addr.s_addr == s.sin_addr.s_addr);
    CHECK(((struct sockaddr_in *)&h.src)->sin_port == s.sin_port);
    CHECK(((struct sockaddr_in *)&h.dst)->sin_port == d.sin_port);
    for (size_t i = 1; i < n; i++)
        CHECK(parse(out, i, PROXY_VERSION_ANY, &h, &used) == PP_MORE);
    CHECK(parse(out, n, PROXY_VERSION_V1, &h, &used) == PP_BAD);
    /* IPv6 with an AUTHORITY (SNI) TLV appended */
    struct sockaddr_in6 s6 = v6("2001:db8::7", 1), d6 = v6("2001:db8::1", 25);
    n = proxy_v2_build(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d6, NULL);
    const char *sni = "mail.example.test";
    out[n] = 0x02;
    out[n + 1] = 0;
    out[n + 2] = (unsigned char)strlen(sni);
    memcpy(out + n + 3, sni, strlen(sni));
    size_t len = (size_t)out[14] << 8 | out[15];
    len += 3 + strlen(sni);
    out[14] = (unsigned char)(len >> 8);
    out[15] = (unsigned char)len;
    n += 3 + strlen(sni);
    CHECK(parse(out, n, PROXY_VERSION_ANY, &h, &used) == PP_OK && used == n);
    CHECK(h.src.ss_family == AF_INET6 && !h.ssl);
    CHECK_STR(h.authority, "mail.example.test");
    /* a TLV whose length runs past the header: refused */
    out[n - strlen(sni) - 1] = 0xff;
    CHECK(parse(out, n, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
}

static void
test_v2_bad(void)
{
    struct sockaddr_in s = v4("192.0.2.7", 40000), d = v4("203.0.113.1", 993);
    unsigned char good[PROXY_V2_MAX], out[PROXY_V2_MAX];
    size_t n =
        proxy_v2_build(good, sizeof(good), (struct sockaddr *)&s, (struct sockaddr *)&d, NULL);
    struct proxy_header h;
    size_t used;
    memcpy(out, good, n);
    out[12] = 0x11; /* version 1 in the binary form */
    CHECK(parse(out, n, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    memcpy(out, good, n);
    out[12] = 0x22; /* command 2 */
    CHECK(parse(out, n, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    memcpy(out, good, n);
    out[13] = 0x12; /* UDP */
    CHECK(parse(out, n, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    memcpy(out, good, n);
    out[13] = 0x21; /* IPv6 family, but only 12 bytes of addresses */
    CHECK(parse(out, n, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    memcpy(out, good, n);
    out[14] = 0x04; /* over PROXY_PARSE_V2_MAX: refused without waiting for it */
    CHECK(parse(out, 16, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    memcpy(out, good, n);
    out[5] ^= 1; /* signature */
    CHECK(parse(out, n, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    /* a stray byte after the addresses is a truncated TLV */
    memcpy(out, good, n);
    out[15] += 1;
    out[n] = 0x04;
    CHECK(parse(out, n + 1, PROXY_VERSION_ANY, &h, &used) == PP_BAD);
    /* LOCAL (a health check): the connection's own addresses */
    memcpy(out, good, n);
    out[12] = 0x20;
    CHECK(parse(out, n, PROXY_VERSION_ANY, &h, &used) == PP_OK && h.local && h.src_len == 0);
    /* UNSPEC with no addresses */
    memcpy(out, good, 16);
    out[13] = 0x00;
    out[14] = out[15] = 0;
    CHECK(parse(out, 16, PROXY_VERSION_ANY, &h, &used) == PP_OK && h.local && used == 16);
}

int
main(void)
{
    test_v1();
    test_v1_bad();
    test_v2();
    test_v2_bad();
    return test_finish("test_proxy_parse");
}
