/*
 * fuzz_imap.c: libFuzzer target for the IMAP command parser (protocols/imap_parse.c), literals
 * included. It drives the parser the way imap.c does (continuations, consuming, skipping to the
 * next LF) and checks that every answer stays inside the input and always makes progress.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_command(const struct imap_command *cmd, const char *p, size_t n)
{
    char out[IMAP_COMMAND_MAX + 1];
    MOAT_ASSERT(cmd->tag != NULL && cmd->tag_len > 0 && cmd->tag_len <= IMAP_TAG_MAX);
    for (size_t i = 0; i < cmd->tag_len; i++)
        MOAT_ASSERT(imap_tag_char((unsigned char)cmd->tag[i]));
    MOAT_ASSERT(cmd->name != NULL && cmd->name_len > 0 && cmd->name_len <= IMAP_NAME_MAX);
    MOAT_ASSERT(cmd->nargs <= IMAP_ARGS_MAX);
    for (size_t i = 0; i < cmd->nargs; i++) {
        const struct imap_arg *a = &cmd->args[i];
        MOAT_ASSERT(a->p >= p && a->p + a->len <= p + cmd->used);
        int r = imap_arg_string(a, out, sizeof(out));
        MOAT_ASSERT(r <= (int)a->len);
        if (a->type == IMAP_ARG_LITERAL)
            MOAT_ASSERT(a->len <= IMAP_LITERAL_MAX && memchr(a->p, '\0', a->len) == NULL);
    }
    MOAT_ASSERT(cmd->used <= n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the line limit, as a small client buffer would. */
    size_t line_max = size > 0 && data[0] < 16 ? 16 + (size_t)data[0] * 512 : IMAP_LINE_MAX;
    const char *p = (const char *)data;
    size_t n = size, cont_done = 0;
    bool skip = false;
    for (int rounds = 0; n > 0 && rounds < 100000; rounds++) {
        if (skip) {
            const char *lf = memchr(p, '\n', n);
            size_t used = lf == NULL ? n : (size_t)(lf - p) + 1;
            p += used;
            n -= used;
            skip = false;
            continue;
        }
        struct imap_command cmd;
        enum imap_parse_status r =
            imap_parse_command(p, n, cont_done, IMAP_LITERAL_MAX, line_max, &cmd);
        switch (r) {
        case IMAP_PARSE_MORE:
            return 0;
        case IMAP_PARSE_NEED_CONTINUATION:
            MOAT_ASSERT(cmd.used > cont_done && cmd.used <= n);
            cont_done = cmd.used; /* "+" sent: the next call must not ask again */
            continue;
        case IMAP_PARSE_OK:
            check_command(&cmd, p, n);
            break;
        case IMAP_PARSE_BAD:
        case IMAP_PARSE_TOOBIG:
            MOAT_ASSERT(cmd.error != NULL);
            break;
        case IMAP_PARSE_TOO_LONG:
            break;
        }
        MOAT_ASSERT(cmd.used > 0 && cmd.used <= n);
        if (cmd.tag != NULL)
            MOAT_ASSERT(cmd.tag_len > 0 && cmd.tag_len <= IMAP_TAG_MAX);
        skip = cmd.skip_line;
        cont_done = 0;
        p += cmd.used;
        n -= cmd.used;
    }
    return 0;
}
