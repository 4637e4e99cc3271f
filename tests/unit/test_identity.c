/*
 * test_identity.c: the identity hand-off lines (identity.h) byte for byte: SMTP XCLIENT with
 * xtext, the IPV6: prefix, split halves and the length cap; IMAP ID; POP3 XCLIENT.
 */
#include <string.h>

#include "identity.h"
#include "test.h"

static void
test_smtp_xclient(void)
{
    char out[IDENTITY_XCLIENT_LINE_MAX * 4];
    struct identity_xclient x = {.helo = "client.example",
                                 .proto = "ESMTP",
                                 .addr = "192.0.2.7",
                                 .port = "40000",
                                 .name = "[UNAVAILABLE]",
                                 .destaddr = "198.51.100.1",
                                 .destport = "25"};
    int n = identity_smtp_xclient(&x, XCLIENT_PART_ALL, out, sizeof(out));
    CHECK(n > 0 && (size_t)n == strlen(out));
    CHECK_STR(out, "XCLIENT HELO=client.example PROTO=ESMTP ADDR=192.0.2.7 PORT=40000 "
                   "NAME=[UNAVAILABLE] DESTADDR=198.51.100.1 DESTPORT=25");
    /* IPv6 addresses (client and moat's own) carry Postfix's IPV6: prefix; '+', '=' and
     * spaces are xtext */
    x.addr = "2001:db8::1";
    x.destaddr = "2001:db8::2";
    x.login = "a+b=c d";
    n = identity_smtp_xclient(&x, XCLIENT_PART_REST, out, sizeof(out));
    CHECK(n > 0);
    CHECK_STR(out, "XCLIENT ADDR=IPV6:2001:db8::1 PORT=40000 NAME=[UNAVAILABLE] "
                   "DESTADDR=IPV6:2001:db8::2 DESTPORT=25 LOGIN=a+2Bb+3Dc+20d");
    n = identity_smtp_xclient(&x, XCLIENT_PART_HELO, out, sizeof(out));
    CHECK_STR(out, "XCLIENT HELO=client.example PROTO=ESMTP");
    /* absent values are left out */
    struct identity_xclient only = {.addr = "192.0.2.1"};
    n = identity_smtp_xclient(&only, XCLIENT_PART_ALL, out, sizeof(out));
    CHECK_STR(out, "XCLIENT ADDR=192.0.2.1");
    /* too long for Postfix's line: -1, never a cut line */
    char helo[256];
    memset(helo, 'h', sizeof(helo) - 1);
    helo[sizeof(helo) - 1] = '\0';
    x.helo = helo;
    x.login = "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14"
              "\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f\x80\x81\x82\x83\x84\x85\x86\x87"
              "\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b";
    CHECK(identity_smtp_xclient(&x, XCLIENT_PART_ALL, out, sizeof(out)) == -1);
    CHECK(identity_smtp_xclient(&x, XCLIENT_PART_HELO, out, sizeof(out)) > 0);
    /* a buffer too small: -1 */
    CHECK(identity_smtp_xclient(&only, XCLIENT_PART_ALL, out, 12) == -1);
    CHECK(identity_smtp_xclient(&only, XCLIENT_PART_ALL, out, 4) == -1);
}

static void
test_imap_pop3(void)
{
    char out[IDENTITY_LINE_MAX];
    struct identity_client c = {"2001:db8::7", 40000, "127.0.0.1", 993, "3f2a9c01"};
    int n = identity_imap_id("m1", &c, out, sizeof(out));
    CHECK(n > 0 && (size_t)n == strlen(out));
    CHECK_STR(out, "m1 ID (\"x-originating-ip\" \"2001:db8::7\" \"x-originating-port\" \"40000\" "
                   "\"x-connected-ip\" \"127.0.0.1\" \"x-connected-port\" \"993\" "
                   "\"x-session-ext-id\" \"3f2a9c01\")\r\n");
    n = identity_pop3_xclient(&c, out, sizeof(out));
    CHECK_STR(out, "XCLIENT ADDR=2001:db8::7 PORT=40000 SESSION=3f2a9c01\r\n");
    CHECK(identity_imap_id("m1", &c, out, 20) == -1);
    CHECK(identity_pop3_xclient(&c, out, 20) == -1);
}

int
main(void)
{
    test_smtp_xclient();
    test_imap_pop3();
    return test_finish("test_identity");
}
