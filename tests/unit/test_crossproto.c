/*
 * test_crossproto.c: HTTP request and header lines are recognised; mail commands are not.
 */
#include <string.h>

#include "crossproto.h"
#include "test.h"

static bool
http(const char *s)
{
    return crossproto_http(s, strlen(s));
}

int
main(void)
{
    CHECK(http("POST / HTTP/1.1\r\n"));
    CHECK(http("GET /index.html HTTP/1.0\n"));
    CHECK(http("CONNECT mx:25 HTTP/1.1\r\nHost: x\r\n"));
    CHECK(http("Host: mail.example\r\n"));
    CHECK(http("user-agent: x\r\n"));
    CHECK(http("Content-Length: 5\r\n"));
    /* incomplete line: not yet */
    CHECK(!http("POST / HTTP/1.1"));
    /* mail commands, including ones that start like a method */
    CHECK(!http("a1 LOGIN alice secret\r\n"));
    CHECK(!http("USER alice\r\n"));
    CHECK(!http("GET mailbox\r\n"));
    CHECK(!http("post / http/1.1\r\n"));
    CHECK(!http("a HOST: x\r\n"));
    CHECK(!http("\r\n"));
    CHECK(!crossproto_http("", 0));
    return test_finish("test_crossproto");
}
