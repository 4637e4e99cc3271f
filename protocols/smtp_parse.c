/*
 * smtp_parse.c: pure SMTP parsers (see smtp_parse.h): command lines, MAIL/RCPT paths and
 * parameters, backend reply lines, xtext. Inputs are peer bytes: every function bounds its reads
 * by the given length, never allocates and never trusts a terminator.
 */
#include <string.h>

#include "smtp_parse.h"

static const struct {
    const char *name;
    enum smtp_verb verb;
} verbs[] = {
    {"EHLO", SMTP_VERB_EHLO},         {"HELO", SMTP_VERB_HELO},
    {"STARTTLS", SMTP_VERB_STARTTLS}, {"AUTH", SMTP_VERB_AUTH},
    {"MAIL", SMTP_VERB_MAIL},         {"RCPT", SMTP_VERB_RCPT},
    {"DATA", SMTP_VERB_DATA},         {"RSET", SMTP_VERB_RSET},
    {"NOOP", SMTP_VERB_NOOP},         {"QUIT", SMTP_VERB_QUIT},
    {"HELP", SMTP_VERB_HELP},         {"VRFY", SMTP_VERB_REFUSED},
    {"EXPN", SMTP_VERB_REFUSED},      {"ETRN", SMTP_VERB_REFUSED},
    {"BDAT", SMTP_VERB_REFUSED},      {"XCLIENT", SMTP_VERB_REFUSED},
    {"XFORWARD", SMTP_VERB_REFUSED},  {"TURN", SMTP_VERB_REFUSED},
    {"ATRN", SMTP_VERB_REFUSED},      {"SEND", SMTP_VERB_REFUSED},
    {"SOML", SMTP_VERB_REFUSED},      {"SAML", SMTP_VERB_REFUSED},
    {"GET", SMTP_VERB_HTTP},          {"POST", SMTP_VERB_HTTP},
    {"HEAD", SMTP_VERB_HTTP},         {"PUT", SMTP_VERB_HTTP},
    {"DELETE", SMTP_VERB_HTTP},       {"OPTIONS", SMTP_VERB_HTTP},
    {"CONNECT", SMTP_VERB_HTTP},      {"TRACE", SMTP_VERB_HTTP},
    {"PATCH", SMTP_VERB_HTTP},
};

static int
lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

bool
smtp_equal_nocase(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

const char *
smtp_verb_name(enum smtp_verb v)
{
    switch (v) {
    case SMTP_VERB_UNKNOWN:
        return "unknown";
    case SMTP_VERB_REFUSED:
        return "refused";
    case SMTP_VERB_HTTP:
        return "http";
    case SMTP_VERB_EHLO:
    case SMTP_VERB_HELO:
    case SMTP_VERB_STARTTLS:
    case SMTP_VERB_AUTH:
    case SMTP_VERB_MAIL:
    case SMTP_VERB_RCPT:
    case SMTP_VERB_DATA:
    case SMTP_VERB_RSET:
    case SMTP_VERB_NOOP:
    case SMTP_VERB_QUIT:
    case SMTP_VERB_HELP:
        break;
    }
    for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
        if (verbs[i].verb == v)
            return verbs[i].name;
    return "unknown";
}

enum smtp_parse_status
smtp_cmd_parse(const char *p, size_t n, struct smtp_cmd *out)
{
    out->verb = SMTP_VERB_UNKNOWN;
    out->args = p + n;
    out->args_len = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 && c != '\t')
            return SMTP_PARSE_BAD; /* NUL, bare CR, other controls */
        if (c == 0x7f)
            return SMTP_PARSE_BAD;
    }
    size_t v = 0;
    while (v < n && p[v] != ' ' && p[v] != '\t')
        v++;
    for (size_t i = 0; i < ARRAY_SIZE(verbs); i++) {
        if (smtp_equal_nocase(p, v, verbs[i].name, strlen(verbs[i].name))) {
            out->verb = verbs[i].verb;
            break;
        }
    }
    size_t a = v;
    while (a < n && (p[a] == ' ' || p[a] == '\t'))
        a++;
    size_t e = n;
    while (e > a && (p[e - 1] == ' ' || p[e - 1] == '\t'))
        e--;
    out->args = p + a;
    out->args_len = e - a;
    return SMTP_PARSE_OK;
}

/* Index of the '>' closing the path that starts at p[0] == '<', honouring quoted strings. */
static size_t
path_end(const char *p, size_t n)
{
    bool quoted = false;
    for (size_t i = 1; i < n; i++) {
        if (quoted && p[i] == '\\') {
            i++;
            continue;
        }
        if (p[i] == '"')
            quoted = !quoted;
        else if (!quoted && p[i] == '>')
            return i;
        else if (!quoted && p[i] == '<')
            return 0;
    }
    return 0;
}

/* Fill domain from the last '@' outside a quoted local part. */
static void
path_domain(struct smtp_path *out)
{
    bool quoted = false;
    const char *at = NULL;
    for (size_t i = 0; i < out->addr_len; i++) {
        char c = out->addr[i];
        if (quoted && c == '\\') {
            i++;
            continue;
        }
        if (c == '"')
            quoted = !quoted;
        else if (!quoted && c == '@')
            at = out->addr + i;
    }
    if (at != NULL) {
        out->domain = at + 1;
        out->domain_len = (size_t)(out->addr + out->addr_len - out->domain);
    }
}

enum smtp_parse_status
smtp_path_parse(const char *args, size_t n, const char *prefix, struct smtp_path *out)
{
    memset(out, 0, sizeof(*out));
    size_t plen = strlen(prefix);
    if (n < plen || !smtp_equal_nocase(args, plen, prefix, plen))
        return SMTP_PARSE_BAD;
    size_t i = plen;
    while (i < n && args[i] == ' ')
        i++;
    if (i >= n || args[i] != '<')
        return SMTP_PARSE_BAD;
    size_t close = path_end(args + i, n - i);
    if (close == 0 || close - 1 > SMTP_PATH_MAX)
        return SMTP_PARSE_BAD;
    const char *a = args + i + 1;
    size_t alen = close - 1;
    if (alen > 0 && a[0] == '@') {
        const char *colon = memchr(a, ':', alen);
        if (colon == NULL)
            return SMTP_PARSE_BAD;
        out->source_route = true;
        alen -= (size_t)(colon + 1 - a);
        a = colon + 1;
    }
    out->addr = a;
    out->addr_len = alen;
    path_domain(out);
    size_t rest = i + close + 1;
    if (rest < n && args[rest] != ' ')
        return SMTP_PARSE_BAD;
    while (rest < n && args[rest] == ' ')
        rest++;
    out->params = args + rest;
    out->params_len = n - rest;
    return SMTP_PARSE_OK;
}

bool
smtp_param_find(const char *params, size_t n, const char *key, const char **val_out,
                size_t *len_out)
{
    size_t klen = strlen(key), i = 0;
    while (i < n) {
        while (i < n && params[i] == ' ')
            i++;
        size_t start = i;
        while (i < n && params[i] != ' ')
            i++;
        const char *tok = params + start;
        size_t tlen = i - start;
        const char *eq = memchr(tok, '=', tlen);
        size_t name_len = eq ? (size_t)(eq - tok) : tlen;
        if (tlen > 0 && smtp_equal_nocase(tok, name_len, key, klen)) {
            *val_out = eq ? eq + 1 : tok + tlen;
            *len_out = eq ? tlen - name_len - 1 : 0;
            return true;
        }
    }
    return false;
}

int
smtp_size_parse(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

enum smtp_parse_status
smtp_reply_line(const char *p, size_t n, int *code_out, bool *last_out)
{
    if (n < 3 || p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
        return SMTP_PARSE_BAD;
    if (n > 3 && p[3] != ' ' && p[3] != '-')
        return SMTP_PARSE_BAD;
    for (size_t i = 3; i < n; i++)
        if ((unsigned char)p[i] < 0x20 && p[i] != '\t')
            return SMTP_PARSE_BAD;
    *code_out = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    *last_out = n == 3 || p[3] == ' ';
    return SMTP_PARSE_OK;
}

int
smtp_xtext_encode(const char *p, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        bool plain = c >= 0x21 && c <= 0x7e && c != '+' && c != '=';
        size_t need = plain ? 1 : 3;
        if (o + need + 1 > cap)
            return -1;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '+';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (o + 1 > cap)
        return -1;
    out[o] = '\0';
    return (int)o;
}

bool
smtp_domain_in_list(const char *p, size_t n, const char *list)
{
    if (list == NULL)
        return false;
    if (n > 0 && p[n - 1] == '.')
        n--;
    if (n == 0)
        return false;
    const char *l = list;
    while (*l != '\0') {
        while (*l == ' ' || *l == ',' || *l == '\t')
            l++;
        const char *start = l;
        while (*l != '\0' && *l != ' ' && *l != ',' && *l != '\t')
            l++;
        if (l > start && smtp_equal_nocase(p, n, start, (size_t)(l - start)))
            return true;
    }
    return false;
}
