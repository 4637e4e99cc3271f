/*
 * test_smtp_parse.c: unit tests for the pure SMTP parsers (smtp_parse.c) and the DATA
 * canonicaliser (smtp_data.c), with the SMTP smuggling end-of-data variants as negative cases.
 */
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"
#include "smtp_parse.h"
#include "test.h"

static void
test_cmd(void)
{
    struct smtp_cmd c;
    CHECK(smtp_cmd_parse("ehlo  client.example ", 21, &c) == SMTP_PARSE_OK);
    CHECK(c.verb == SMTP_VERB_EHLO);
    CHECK(c.args_len == 14 && memcmp(c.args, "client.example", 14) == 0);
    CHECK(smtp_cmd_parse("StartTLS", 8, &c) == SMTP_PARSE_OK && c.verb == SMTP_VERB_STARTTLS);
    CHECK(smtp_cmd_parse("BDAT 10 LAST", 12, &c) == SMTP_PARSE_OK && c.verb == SMTP_VERB_REFUSED);
    CHECK(smtp_cmd_parse("GET / HTTP/1.1", 14, &c) == SMTP_PARSE_OK && c.verb == SMTP_VERB_HTTP);
    CHECK(smtp_cmd_parse("MAILX", 5, &c) == SMTP_PARSE_OK && c.verb == SMTP_VERB_UNKNOWN);
    CHECK(smtp_cmd_parse("NOOP\0x", 6, &c) == SMTP_PARSE_BAD);
    CHECK(smtp_cmd_parse("NOOP\rx", 6, &c) == SMTP_PARSE_BAD);
    CHECK(smtp_cmd_parse("", 0, &c) == SMTP_PARSE_OK && c.verb == SMTP_VERB_UNKNOWN);
}

static void
test_path(void)
{
    struct smtp_path p;
    const char *a = "FROM:<alice@example.test> SIZE=100 BODY=8BITMIME";
    CHECK(smtp_path_parse(a, strlen(a), "FROM:", &p) == SMTP_PARSE_OK);
    CHECK(p.addr_len == 18 && memcmp(p.addr, "alice@example.test", 18) == 0);
    CHECK(p.domain_len == 12 && memcmp(p.domain, "example.test", 12) == 0);
    const char *v;
    size_t vl;
    uint64_t size;
    CHECK(smtp_param_find(p.params, p.params_len, "size", &v, &vl));
    CHECK(smtp_size_parse(v, vl, &size) == 0 && size == 100);
    CHECK(!smtp_param_find(p.params, p.params_len, "AUTH", &v, &vl));
    a = "TO: <@relay.example:bob@example.test>";
    CHECK(smtp_path_parse(a, strlen(a), "TO:", &p) == SMTP_PARSE_OK && p.source_route);
    CHECK(p.domain_len == 12);
    a = "TO:<\"x@evil.example\"@example.test>";
    CHECK(smtp_path_parse(a, strlen(a), "TO:", &p) == SMTP_PARSE_OK);
    CHECK(p.domain_len == 12 && memcmp(p.domain, "example.test", 12) == 0);
    a = "FROM:<>";
    CHECK(smtp_path_parse(a, strlen(a), "FROM:", &p) == SMTP_PARSE_OK && p.addr_len == 0);
    CHECK(smtp_path_parse("TO:bob@x", 8, "TO:", &p) == SMTP_PARSE_BAD);
    CHECK(smtp_path_parse("TO:<bob@x", 9, "TO:", &p) == SMTP_PARSE_BAD);
    CHECK(smtp_path_parse("TO:<a>b", 7, "TO:", &p) == SMTP_PARSE_BAD);
    CHECK(smtp_path_parse("FROM:<a>", 8, "TO:", &p) == SMTP_PARSE_BAD);
    CHECK(smtp_size_parse("99999999999999999999", 20, &size) == -1);
    CHECK(smtp_domain_in_list("Example.TEST.", 13, "foo.test, example.test"));
    CHECK(!smtp_domain_in_list("evil.example", 12, "foo.test, example.test"));
    CHECK(!smtp_domain_in_list("example.tes", 11, "example.test"));
}

static void
test_reply_xtext(void)
{
    int code;
    bool last;
    CHECK(smtp_reply_line("250-PIPELINING", 14, &code, &last) == SMTP_PARSE_OK);
    CHECK(code == 250 && !last);
    CHECK(smtp_reply_line("354 go", 6, &code, &last) == SMTP_PARSE_OK && code == 354 && last);
    CHECK(smtp_reply_line("220", 3, &code, &last) == SMTP_PARSE_OK && last);
    CHECK(smtp_reply_line("25", 2, &code, &last) == SMTP_PARSE_BAD);
    CHECK(smtp_reply_line("250x", 4, &code, &last) == SMTP_PARSE_BAD);
    CHECK(smtp_reply_line("650 x", 5, &code, &last) == SMTP_PARSE_BAD);
    char out[64];
    CHECK(smtp_xtext_encode("a+b=c d\r", 8, out, sizeof(out)) == 16);
    CHECK_STR(out, "a+2Bb+3Dc+20d+0D");
    CHECK(smtp_xtext_encode("abcdef", 6, out, 6) == -1);
}

/* Feed text through the canonicaliser in chunks of `step` bytes. */
static enum smtp_data_status
run_data(const char *in, size_t n, bool reject, size_t step, char *out, size_t *out_len,
         size_t *used_out, struct smtp_data *d)
{
    smtp_data_init(d, reject, 0);
    size_t i = 0, o = 0;
    enum smtp_data_status st = SMTP_DATA_MORE;
    while (i < n) {
        size_t used, ol, chunk = MOAT_MIN(step, n - i);
        st = smtp_data_feed(d, in + i, chunk, out + o, 4096 - o, &used, &ol);
        i += used;
        o += ol;
        if (st == SMTP_DATA_END)
            break;
    }
    out[o] = '\0';
    *out_len = o;
    *used_out = i;
    return st;
}

static void
check_data(const char *in, bool reject, enum smtp_data_error err, const char *expect, size_t tail)
{
    static const size_t steps[] = {1, 2, 3, 7, 4096};
    for (size_t k = 0; k < ARRAY_SIZE(steps); k++) {
        char out[4097];
        size_t ol, used;
        struct smtp_data d;
        size_t n = strlen(in);
        enum smtp_data_status st = run_data(in, n, reject, steps[k], out, &ol, &used, &d);
        CHECK(st == SMTP_DATA_END);
        CHECK(used == n - tail);
        CHECK(d.error == err);
        if (err == SMTP_DATA_OK && expect != NULL)
            CHECK_STR(out, expect);
    }
}

static void
test_data(void)
{
    check_data("hello\r\n.\r\n", false, SMTP_DATA_OK, "hello\r\n", 0);
    check_data(".\r\n", false, SMTP_DATA_OK, "", 0);
    check_data("..dot\r\n.x\r\n\r\n.\r\nMAIL", false, SMTP_DATA_OK, "..dot\r\nx\r\n\r\n", 4);
    /* smuggling: none of these ends the message */
    check_data("a\n.\nMAIL FROM:<x@y>\r\n.\r\n", false, SMTP_DATA_OK,
               "a\r\n..\r\nMAIL FROM:<x@y>\r\n", 0);
    check_data("a\n.\r\nMAIL\r\n.\r\n", false, SMTP_DATA_OK, "a\r\n..\r\nMAIL\r\n", 0);
    check_data("a\r\n.\nMAIL\r\n.\r\n", false, SMTP_DATA_OK, "a\r\n..\r\nMAIL\r\n", 0);
    check_data("a\n.\nMAIL\r\n.\r\n", true, SMTP_DATA_BARE_LF, NULL, 0);
    check_data("a\r\n.\nMAIL\r\n.\r\n", true, SMTP_DATA_BARE_LF, NULL, 0);
    check_data("a\r.\r\nMAIL\r\n.\r\n", false, SMTP_DATA_BARE_CR, NULL, 0);
    check_data("a\r.\nMAIL\r\n.\r\n", false, SMTP_DATA_BARE_CR, NULL, 0);
    check_data("a\n.\rMAIL\r\n.\r\n", false, SMTP_DATA_BARE_CR, NULL, 0);
    check_data("a\r.\rMAIL\r\n.\r\n", false, SMTP_DATA_BARE_CR, NULL, 0);
    check_data("a\r\n.\r\r\nMAIL\r\n.\r\n", false, SMTP_DATA_BARE_CR, NULL, 0);
    check_data("a\r\r\n.\r\r\nMAIL\r\n.\r\n", false, SMTP_DATA_BARE_CR, NULL, 0);
    char nul[] = "a\r\n\0.\r\nMAIL\r\n.\r\n";
    struct smtp_data d;
    char out[4097];
    size_t ol, used;
    CHECK(run_data(nul, sizeof(nul) - 1, false, 5, out, &ol, &used, &d) == SMTP_DATA_END);
    CHECK(d.error == SMTP_DATA_NUL && used == sizeof(nul) - 1);
    /* size */
    smtp_data_init(&d, false, 5);
    CHECK(smtp_data_feed(&d, "123456\r\n.\r\n", 11, out, sizeof(out), &used, &ol) == SMTP_DATA_END);
    CHECK(d.error == SMTP_DATA_TOO_BIG && ol <= 5);
    /* output room: never more than asked */
    smtp_data_init(&d, false, 0);
    CHECK(smtp_data_feed(&d, "abcdefgh", 8, out, 5, &used, &ol) == SMTP_DATA_MORE);
    CHECK(ol <= 5 && used == ol);
}

int
main(void)
{
    test_cmd();
    test_path();
    test_reply_xtext();
    test_data();
    return test_finish("test_smtp_parse");
}
