/*
 * fuzz_smtp.c: libFuzzer target for the SMTP front's pure parsers. The first byte picks a split
 * point; the input goes through the command, path, parameter, reply and xtext parsers line by
 * line, and through the DATA canonicaliser in two chunks and in both bare-LF modes. Checks that
 * the canonical output never holds a bare CR/LF and never a line "." before the end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"
#include "smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_line(const char *p, size_t n)
{
    struct smtp_cmd c;
    struct smtp_path path;
    const char *v;
    size_t vl;
    uint64_t sz;
    int code;
    bool last;
    char x[1024];
    if (smtp_cmd_parse(p, n, &c) == SMTP_PARSE_OK) {
        if (smtp_path_parse(c.args, c.args_len, "FROM:", &path) == SMTP_PARSE_OK) {
            MOAT_ASSERT(path.addr + path.addr_len <= p + n);
            if (smtp_param_find(path.params, path.params_len, "SIZE", &v, &vl))
                (void)smtp_size_parse(v, vl, &sz);
            if (path.domain != NULL)
                (void)smtp_domain_in_list(path.domain, path.domain_len, "a.test, b.test");
        }
        (void)smtp_path_parse(c.args, c.args_len, "TO:", &path);
    }
    (void)smtp_reply_line(p, n, &code, &last);
    int k = smtp_xtext_encode(p, n, x, sizeof(x));
    MOAT_ASSERT(k < 0 || (size_t)k < sizeof(x));
}

static void
fuzz_data(const char *p, size_t n, size_t split, bool reject)
{
    static char out[1 << 17];
    struct smtp_data d;
    smtp_data_init(&d, reject, 0);
    size_t o = 0, i = 0;
    while (i < n) {
        size_t lim = i < split ? split : n;
        size_t used, ol;
        enum smtp_data_status st = smtp_data_feed(
            &d, p + i, lim - i, out + o, MOAT_MIN(sizeof(out) - o, (size_t)64), &used, &ol);
        MOAT_ASSERT(used <= lim - i && ol <= 64);
        i += used;
        o += ol;
        if (st == SMTP_DATA_END || o + 64 > sizeof(out))
            break;
    }
    if (d.error != SMTP_DATA_OK)
        return;
    for (size_t j = 0; j < o; j++) {
        if (out[j] == '\r')
            MOAT_ASSERT(j + 1 < o && out[j + 1] == '\n');
        if (out[j] == '\n')
            MOAT_ASSERT(j > 0 && out[j - 1] == '\r');
        MOAT_ASSERT(out[j] != '\0');
        bool line_start = j == 0 || out[j - 1] == '\n';
        if (line_start && out[j] == '.')
            MOAT_ASSERT(j + 1 < o && out[j + 1] == '.');
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    size_t split = n ? data[0] % (n + 1) : 0;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            fuzz_line(p + start, i - start);
            start = i + 1;
        }
    }
    fuzz_line(p + start, n - start);
    fuzz_data(p, n, split, false);
    fuzz_data(p, n, split, true);
    return 0;
}
