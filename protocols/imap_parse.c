/*
 * imap_parse.c: the pure IMAP command parser (see imap_parse.h). It re-parses the command from
 * its first octet on every call, so the only state the caller keeps is how far continuations
 * were sent. Sizes are bounded before any arithmetic; a literal is judged (and refused) as soon
 * as its "{n}" is seen, so no continuation is ever promised for octets moat would not take.
 */
#include <string.h>
#include <strings.h>

#include "imap_parse.h"

#define IMAP_DEPTH_MAX 8

struct cursor {
    const char *p;
    size_t n;
    size_t i;   /* next octet to read */
    size_t lf;  /* the LF ending the current line segment */
    size_t eol; /* end of the segment's text (CR or LF) */
    size_t line_max;
    struct imap_command *cmd;
};

bool
imap_tag_char(unsigned char c)
{
    if (c <= 0x20 || c >= 0x7f)
        return false;
    return strchr("(){%*\"\\+", c) == NULL;
}

static bool
atom_char(unsigned char c)
{
    if (c >= 0x80)
        return true; /* 8-bit user names and passwords sent unquoted */
    if (c <= 0x20 || c == 0x7f)
        return false;
    return strchr("(){%*\"\\", c) == NULL;
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Find the LF that ends the segment starting at c->i. */
static enum imap_parse_status
segment(struct cursor *c)
{
    size_t avail = c->n - c->i;
    size_t look = MOAT_MIN(avail, c->line_max);
    const char *lf = memchr(c->p + c->i, '\n', look);
    if (lf == NULL) {
        if (avail < c->line_max)
            return IMAP_PARSE_MORE;
        /* its end may be here already, past the limit: never swallow the next line */
        const char *end = memchr(c->p + c->i, '\n', avail);
        c->cmd->used = end != NULL ? (size_t)(end - c->p) + 1 : c->n;
        c->cmd->skip_line = end == NULL;
        return IMAP_PARSE_TOO_LONG;
    }
    c->lf = (size_t)(lf - c->p);
    c->eol = c->lf;
    if (c->eol > c->i && c->p[c->eol - 1] == '\r')
        c->eol--;
    return IMAP_PARSE_OK;
}

/* A syntax error at c->i: drop through the end of the current line. */
static enum imap_parse_status
bad(struct cursor *c, const char *why)
{
    const char *lf = memchr(c->p + c->i, '\n', c->n - c->i);
    c->cmd->error = why;
    if (lf != NULL) {
        c->cmd->used = (size_t)(lf - c->p) + 1;
    } else {
        c->cmd->used = c->n;
        c->cmd->skip_line = true;
    }
    return IMAP_PARSE_BAD;
}

static enum imap_parse_status
check_segment(struct cursor *c)
{
    enum imap_parse_status r = segment(c);
    if (r != IMAP_PARSE_OK)
        return r;
    if (memchr(c->p + c->i, '\0', c->eol - c->i) != NULL)
        return bad(c, "NUL octet in command");
    if (memchr(c->p + c->i, '\r', c->eol - c->i) != NULL)
        return bad(c, "Bare CR in command");
    return IMAP_PARSE_OK;
}

static enum imap_parse_status
parse_tag_and_name(struct cursor *c)
{
    struct imap_command *cmd = c->cmd;
    size_t j = c->i;
    bool valid = true;
    while (j < c->eol && c->p[j] != ' ') {
        if (!imap_tag_char((unsigned char)c->p[j]))
            valid = false;
        j++;
    }
    if (j == c->i || j - c->i > IMAP_TAG_MAX || !valid)
        return bad(c, "Invalid tag");
    cmd->tag = c->p + c->i;
    cmd->tag_len = j - c->i;
    if (j == c->eol || j + 1 == c->eol) {
        c->i = j;
        return bad(c, "Missing command");
    }
    c->i = j + 1;
    j = c->i;
    while (j < c->eol && c->p[j] != ' ' && imap_tag_char((unsigned char)c->p[j]))
        j++;
    if (j == c->i || j - c->i > IMAP_NAME_MAX || (j < c->eol && c->p[j] != ' '))
        return bad(c, "Invalid command");
    cmd->name = c->p + c->i;
    cmd->name_len = j - c->i;
    c->i = j;
    return IMAP_PARSE_OK;
}

static enum imap_parse_status
parse_quoted(struct cursor *c, struct imap_arg *a)
{
    size_t j = c->i + 1;
    while (j < c->eol) {
        char ch = c->p[j];
        if (ch == '"') {
            a->type = IMAP_ARG_QUOTED;
            a->p = c->p + c->i + 1;
            a->len = j - c->i - 1;
            c->i = j + 1;
            return IMAP_PARSE_OK;
        }
        if (ch == '\\') {
            if (j + 1 >= c->eol || (c->p[j + 1] != '"' && c->p[j + 1] != '\\'))
                return bad(c, "Invalid escape in quoted string");
            j += 2;
            continue;
        }
        j++;
    }
    return bad(c, "Unterminated quoted string");
}

/* "{digits[+]}" at the end of the segment; the octets follow the LF. */
static enum imap_parse_status
parse_literal(struct cursor *c, struct imap_arg *a, size_t cont_done, size_t literal_max)
{
    struct imap_command *cmd = c->cmd;
    size_t j = c->i + 1, digits = 0;
    uint64_t size = 0;
    bool huge = false;
    while (j < c->eol && is_digit(c->p[j])) {
        if (size > IMAP_COMMAND_MAX)
            huge = true; /* stop growing: no overflow whatever the digit count */
        else
            size = size * 10 + (uint64_t)(c->p[j] - '0');
        digits++;
        j++;
    }
    bool nonsync = j < c->eol && c->p[j] == '+';
    if (nonsync)
        j++;
    if (digits == 0 || j >= c->eol || c->p[j] != '}')
        return bad(c, "Invalid literal");
    if (j + 1 != c->eol)
        return bad(c, "Literal must end the line");
    size_t start = c->lf + 1;
    if (huge || size > literal_max || start > IMAP_COMMAND_MAX || size > IMAP_COMMAND_MAX - start) {
        cmd->used = start;
        cmd->literal_nonsync = nonsync;
        cmd->error = "Literal too large";
        return IMAP_PARSE_TOOBIG;
    }
    if (c->n - start < size) {
        if (nonsync || start <= cont_done)
            return IMAP_PARSE_MORE;
        cmd->used = start;
        return IMAP_PARSE_NEED_CONTINUATION;
    }
    c->i = start + (size_t)size;
    if (memchr(c->p + start, '\0', (size_t)size) != NULL)
        return bad(c, "NUL octet in literal");
    a->type = IMAP_ARG_LITERAL;
    a->p = c->p + start;
    a->len = (size_t)size;
    return check_segment(c);
}

static enum imap_parse_status
parse_atom(struct cursor *c, struct imap_arg *a)
{
    size_t j = c->i;
    while (j < c->eol && atom_char((unsigned char)c->p[j]))
        j++;
    if (j == c->i)
        return bad(c, "Invalid character in command");
    a->type = IMAP_ARG_ATOM;
    a->p = c->p + c->i;
    a->len = j - c->i;
    c->i = j;
    return IMAP_PARSE_OK;
}

static enum imap_parse_status
parse_args(struct cursor *c, size_t cont_done, size_t literal_max)
{
    struct imap_command *cmd = c->cmd;
    int depth = 0;
    bool need_sp = true;
    while (c->i < c->eol) {
        enum imap_parse_status r = IMAP_PARSE_OK;
        if (cmd->nargs == IMAP_ARGS_MAX)
            return bad(c, "Too many arguments");
        struct imap_arg *a = &cmd->args[cmd->nargs];
        char ch = c->p[c->i];
        if (ch == ')') {
            if (depth == 0)
                return bad(c, "Unbalanced parenthesis");
            depth--;
            a->type = IMAP_ARG_LIST_END;
            a->p = c->p + c->i++;
            a->len = 1;
            cmd->nargs++;
            need_sp = true;
            continue;
        }
        if (need_sp) {
            if (ch != ' ' || c->i + 1 == c->eol)
                return bad(c, "Invalid argument separator");
            c->i++;
            ch = c->p[c->i];
        }
        need_sp = true;
        if (ch == '(') {
            if (++depth > IMAP_DEPTH_MAX)
                return bad(c, "Lists nested too deep");
            a->type = IMAP_ARG_LIST_BEGIN;
            a->p = c->p + c->i++;
            a->len = 1;
            need_sp = false;
        } else if (ch == '"') {
            r = parse_quoted(c, a);
        } else if (ch == '{') {
            r = parse_literal(c, a, cont_done, literal_max);
        } else {
            r = parse_atom(c, a);
        }
        if (r != IMAP_PARSE_OK)
            return r;
        cmd->nargs++;
        if (!need_sp && c->i < c->eol && c->p[c->i] == ' ')
            return bad(c, "Space after parenthesis");
    }
    if (depth != 0)
        return bad(c, "Unbalanced parenthesis");
    cmd->used = c->lf + 1;
    return IMAP_PARSE_OK;
}

enum imap_parse_status
imap_parse_command(const char *p, size_t n, size_t cont_done, size_t literal_max, size_t line_max,
                   struct imap_command *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    struct cursor c = {.p = p, .n = n, .i = 0, .cmd = cmd};
    c.line_max = MOAT_MIN(MOAT_MAX(line_max, 3), IMAP_LINE_MAX);
    literal_max = MOAT_MIN(literal_max, IMAP_LITERAL_MAX);
    enum imap_parse_status r = check_segment(&c);
    if (r != IMAP_PARSE_OK)
        return r;
    r = parse_tag_and_name(&c);
    if (r != IMAP_PARSE_OK)
        return r;
    return parse_args(&c, cont_done, literal_max);
}

int
imap_arg_string(const struct imap_arg *a, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return -1;
    switch (a->type) {
    case IMAP_ARG_ATOM:
    case IMAP_ARG_LITERAL:
        if (a->len >= cap)
            return -1;
        memcpy(out, a->p, a->len);
        n = a->len;
        break;
    case IMAP_ARG_QUOTED:
        for (size_t i = 0; i < a->len; i++) {
            if (a->p[i] == '\\' && i + 1 < a->len)
                i++;
            if (n + 1 >= cap)
                return -1;
            out[n++] = a->p[i];
        }
        break;
    case IMAP_ARG_LIST_BEGIN:
    case IMAP_ARG_LIST_END:
        return -1;
    }
    out[n] = '\0';
    return (int)n;
}

bool
imap_arg_is_atom(const struct imap_arg *a, const char *word)
{
    size_t n = strlen(word);
    return a->type == IMAP_ARG_ATOM && a->len == n && strncasecmp(a->p, word, n) == 0;
}
