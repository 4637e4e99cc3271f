/*
 * pop3_parse.c: the pure POP3 command-line parser; see pop3_parse.h. Owns no memory: every
 * result points into the caller's bytes. It must never allocate, copy a peer's bytes or read
 * past (p, n), whatever the input.
 */
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "pop3_parse.h"

static const struct {
    const char *name;
    enum pop3_cmd cmd;
} pop3_keywords[] = {
    {"CAPA", POP3_CMD_CAPA}, {"STLS", POP3_CMD_STLS}, {"USER", POP3_CMD_USER},
    {"PASS", POP3_CMD_PASS}, {"AUTH", POP3_CMD_AUTH}, {"QUIT", POP3_CMD_QUIT},
    {"NOOP", POP3_CMD_NOOP}, {"APOP", POP3_CMD_APOP}, {"STAT", POP3_CMD_STAT},
    {"LIST", POP3_CMD_LIST}, {"RETR", POP3_CMD_RETR}, {"DELE", POP3_CMD_DELE},
    {"RSET", POP3_CMD_RSET}, {"TOP", POP3_CMD_TOP},   {"UIDL", POP3_CMD_UIDL},
    {"LAST", POP3_CMD_LAST},
};

enum pop3_parse
pop3_take_line(const char *p, size_t n, size_t max, struct pop3_line *line_out, size_t *used_out,
               const char **err_out)
{
    size_t len = 0, used = 0;
    bool crlf = false;
    line_out->p = p;
    line_out->len = 0;
    *used_out = 0;
    *err_out = NULL;
    switch (buf_find_line(p, n, max, &len, &used, &crlf)) {
    case LINE_OK:
        break;
    case LINE_MORE:
        return POP3_PARSE_MORE;
    case LINE_TOO_LONG:
        *used_out = MOAT_MIN(n, max);
        *err_out = "Line too long";
        return POP3_PARSE_TOO_LONG;
    }
    *used_out = used;
    line_out->len = len;
    if (memchr(p, '\0', len) != NULL) {
        *err_out = "NUL byte in command";
        return POP3_PARSE_BAD;
    }
    if (memchr(p, '\r', len) != NULL) {
        *err_out = "Stray CR in command";
        return POP3_PARSE_BAD;
    }
    return POP3_PARSE_OK;
}

static enum pop3_cmd
pop3_keyword_lookup(const char *p, size_t n)
{
    for (size_t i = 0; i < ARRAY_SIZE(pop3_keywords); i++) {
        const char *k = pop3_keywords[i].name;
        if (strlen(k) == n && strncasecmp(k, p, n) == 0)
            return pop3_keywords[i].cmd;
    }
    return POP3_CMD_UNKNOWN;
}

static bool
is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

enum pop3_parse
pop3_parse_command(const struct pop3_line *line, struct pop3_command *cmd_out, const char **err_out)
{
    memset(cmd_out, 0, sizeof(*cmd_out));
    *err_out = NULL;
    size_t k = 0;
    while (k < line->len && line->p[k] != ' ')
        k++;
    if (k == 0) {
        *err_out = "Empty command";
        return POP3_PARSE_BAD;
    }
    if (k > POP3_KEYWORD_MAX) {
        *err_out = "Unknown command";
        return POP3_PARSE_BAD;
    }
    for (size_t i = 0; i < k; i++) {
        if (!is_alpha(line->p[i])) {
            *err_out = "Unknown command";
            return POP3_PARSE_BAD;
        }
    }
    cmd_out->keyword = line->p;
    cmd_out->keyword_len = k;
    cmd_out->cmd = pop3_keyword_lookup(line->p, k);
    cmd_out->args = line->p + k;
    cmd_out->args_len = 0;
    if (k < line->len) {
        cmd_out->args = line->p + k + 1;
        cmd_out->args_len = line->len - k - 1;
    }
    return POP3_PARSE_OK;
}

bool
pop3_split_word(const char *p, size_t n, struct pop3_line *word_out, struct pop3_line *rest_out)
{
    size_t k = 0;
    while (k < n && p[k] != ' ')
        k++;
    word_out->p = p;
    word_out->len = k;
    rest_out->p = p + k;
    rest_out->len = 0;
    if (k < n) {
        rest_out->p = p + k + 1;
        rest_out->len = n - k - 1;
    }
    return k > 0;
}

const char *
pop3_cmd_name(enum pop3_cmd c)
{
    for (size_t i = 0; i < ARRAY_SIZE(pop3_keywords); i++) {
        if (pop3_keywords[i].cmd == c)
            return pop3_keywords[i].name;
    }
    return "unknown";
}
