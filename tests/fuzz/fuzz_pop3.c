/*
 * fuzz_pop3.c: the pure POP3 command parser (protocols/pop3_parse.c) over arbitrary client bytes.
 * The first byte picks the line limit (command or SASL response); the rest is taken line by line
 * the way the state machine does, discarding over-long lines, and every result is checked to
 * stay inside the input.
 */
#include <stdlib.h>
#include <string.h>

#include "pop3_parse.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void
check(bool ok)
{
    if (!ok)
        abort();
}

static void
fuzz_command(const struct pop3_line *line)
{
    struct pop3_command c;
    const char *err = NULL;
    if (pop3_parse_command(line, &c, &err) != POP3_PARSE_OK) {
        check(err != NULL);
        return;
    }
    check(c.keyword == line->p && c.keyword_len > 0 && c.keyword_len <= POP3_KEYWORD_MAX);
    check(c.args >= line->p && c.args + c.args_len <= line->p + line->len);
    check(pop3_cmd_name(c.cmd) != NULL);
    struct pop3_line word, rest;
    if (pop3_split_word(c.args, c.args_len, &word, &rest))
        check(word.len > 0 && rest.p + rest.len == c.args + c.args_len);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t max = (data[0] & 1) ? POP3_SASL_LINE_MAX : POP3_LINE_MAX;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    bool discarding = false;
    while (n > 0) {
        struct pop3_line line;
        size_t used = 0;
        const char *err = NULL;
        if (discarding) {
            const char *lf = memchr(p, '\n', n);
            used = lf ? (size_t)(lf - p) + 1 : n;
            discarding = false;
        } else {
            enum pop3_parse r = pop3_take_line(p, n, max, &line, &used, &err);
            if (r == POP3_PARSE_MORE) {
                check(n < max && used == 0);
                break;
            }
            check(used > 0 && used <= n);
            if (r == POP3_PARSE_TOO_LONG) {
                check(memchr(p, '\n', used) == NULL && err != NULL);
                discarding = true;
            } else if (r == POP3_PARSE_BAD) {
                check(err != NULL && line.len < used);
            } else {
                check(line.p == p && line.len < used && memchr(p, '\0', line.len) == NULL);
                fuzz_command(&line);
            }
        }
        p += used;
        n -= used;
    }
    return 0;
}
