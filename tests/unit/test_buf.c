/*
 * test_buf.c: capped buffers and the line splitter (buf.h).
 */
#include <stdlib.h>

#include "buf.h"
#include "test.h"

static void
test_caps(void)
{
    struct buf b;
    buf_init(&b, 8);
    CHECK(b.data == NULL); /* nothing allocated until used */
    CHECK(buf_append(&b, "12345", 5) == 0);
    CHECK(buf_room(&b) == 3);
    CHECK(buf_append(&b, "6789", 4) == -1); /* all or nothing */
    CHECK(b.len == 5);
    CHECK(buf_append(&b, "678", 3) == 0);
    CHECK(buf_room(&b) == 0);
    CHECK(buf_tail(&b) == NULL);
    buf_consume(&b, 2);
    CHECK(memcmp(b.data, "345678", 6) == 0);
    char *t = buf_tail(&b);
    CHECK(t != NULL);
    memcpy(t, "ab", 2);
    buf_commit(&b, 2);
    CHECK(b.len == 8 && memcmp(b.data, "345678ab", 8) == 0);
    buf_consume(&b, 8);
    CHECK(b.data == NULL && b.len == 0); /* drained buffers hold no memory */
    CHECK(buf_append(&b, "", 0) == 0 && b.data == NULL);
    buf_free(&b);
}

/* Consuming from the front moves nothing; the bytes move only when the tail is short. */
static void
test_front_consume(void)
{
    struct buf b;
    buf_init(&b, 8);
    CHECK(buf_append(&b, "12345678", 8) == 0);
    char *start = b.data;
    buf_consume(&b, 2);
    CHECK(b.data == start + 2 && b.len == 6 && memcmp(b.data, "345678", 6) == 0);
    CHECK(buf_room(&b) == 2 && buf_tail_room(&b) == 0);
    buf_consume(&b, 3);
    CHECK(b.data == start + 5 && memcmp(b.data, "678", 3) == 0);
    CHECK(buf_append(&b, "ab", 2) == 0); /* fits at the tail after a move to the front */
    CHECK(b.data == start && memcmp(b.data, "678ab", 5) == 0);
    buf_consume(&b, 1);
    char *t = buf_tail(&b); /* 4 free, 3 of them at the tail: no move */
    CHECK(t == start + 5 && buf_tail_room(&b) == 3);
    memcpy(t, "cde", 3);
    buf_commit(&b, 3);
    CHECK(b.len == 7 && memcmp(b.data, "78abcde", 7) == 0);
    buf_consume(&b, 7);
    CHECK(b.data == NULL && buf_tail_room(&b) == 8);
    buf_free(&b);
}

static void
test_lines(void)
{
    size_t len = 99, used = 99;
    bool crlf = false;
    CHECK(buf_find_line("EHLO x\r\nNOOP\r\n", 14, 512, &len, &used, &crlf) == LINE_OK);
    CHECK(len == 6 && used == 8 && crlf);
    CHECK(buf_find_line("bare\nrest", 9, 512, &len, &used, &crlf) == LINE_OK);
    CHECK(len == 4 && used == 5 && !crlf);
    CHECK(buf_find_line("\n", 1, 512, &len, &used, &crlf) == LINE_OK);
    CHECK(len == 0 && used == 1 && !crlf);
    CHECK(buf_find_line("\r\n", 2, 512, &len, &used, &crlf) == LINE_OK);
    CHECK(len == 0 && used == 2 && crlf);
    CHECK(buf_find_line("partial", 7, 512, &len, &used, &crlf) == LINE_MORE);
    CHECK(buf_find_line("", 0, 512, &len, &used, &crlf) == LINE_MORE);
    /* a CR alone is not a line end */
    CHECK(buf_find_line("a\rb", 3, 512, &len, &used, &crlf) == LINE_MORE);
    /* max counts the terminator: 4 bytes + LF fits in 5, not in 4 */
    CHECK(buf_find_line("abcd\n", 5, 5, &len, &used, &crlf) == LINE_OK);
    CHECK(buf_find_line("abcd\n", 5, 4, &len, &used, &crlf) == LINE_TOO_LONG);
    CHECK(buf_find_line("abcdef", 6, 4, &len, &used, &crlf) == LINE_TOO_LONG);
    /* input at the very end of an allocation: ASan checks no read past it */
    char *edge = malloc(3);
    memcpy(edge, "ab\n", 3);
    CHECK(buf_find_line(edge, 3, 512, &len, &used, &crlf) == LINE_OK && len == 2);
    CHECK(buf_find_line(edge, 2, 512, &len, &used, &crlf) == LINE_MORE);
    free(edge);
}

int
main(void)
{
    test_caps();
    test_front_consume();
    test_lines();
    return test_finish("test_buf");
}
