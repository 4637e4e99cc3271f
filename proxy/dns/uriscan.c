/*
 * uriscan.c: URL host names in a message's text parts (see uriscan.h). Three small machines in a
 * row: lines (pieces of at most URISCAN_LINE_MAX bytes), MIME (header fields Content-Type and
 * Content-Transfer-Encoding, a stack of boundaries, quoted-printable and base64 decoding), and
 * URL recognition over the decoded bytes, HTML character references decoded ("http://",
 * "https://", a bare "www."; percent escapes in a host decoded). It never allocates, never reads
 * past what it was given, and reports a host only once it is complete.
 */
#include <string.h>

#include "uriscan.h"

enum where { W_HEADERS = 0, W_TEXT, W_SKIP, W_STOPPED };
enum ctype { CT_TEXT = 0, CT_MULTIPART, CT_MESSAGE, CT_OTHER };
enum cte { CTE_NONE = 0, CTE_QP, CTE_B64 };
enum url { URL_NONE = 0, URL_HOST, URL_AFTER_COLON, URL_SKIP };

static char
lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
prefix_nocase(const char *p, size_t n, const char *word)
{
    size_t k = strlen(word);
    if (n < k)
        return false;
    for (size_t i = 0; i < k; i++)
        if (lower(p[i]) != word[i])
            return false;
    return true;
}

static bool
host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A byte that cannot be inside a URL written in text or HTML. */
static bool
url_end(char c)
{
    unsigned char u = (unsigned char)c;
    return u <= 0x20 || u >= 0x7f || strchr("\"'<>()[]{}\\^`|", c) != NULL;
}

/* --- URL recognition --- */

/* An IPv4 address in dotted decimal: four numbers of 0..255 without leading zeros (some clients
 * read a leading zero as octal: such a host is not reported rather than misread). */
static bool
ipv4_literal(const char *h, size_t n)
{
    unsigned parts = 0, value = 0, digits = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || h[i] == '.') {
            if (digits == 0 || (digits > 1 && h[i - digits] == '0') || value > 255)
                return false;
            parts++;
            value = 0;
            digits = 0;
        } else if (h[i] >= '0' && h[i] <= '9' && ++digits <= 3) {
            value = value * 10 + (unsigned)(h[i] - '0');
        } else {
            return false;
        }
    }
    return parts == 4;
}

/* A host worth a lookup: labels of 1..63 bytes, at least two, the last not numeric; or an IPv4
 * address literal (other all-numeric hosts are junk). */
static bool
host_ok(const char *h, size_t n)
{
    size_t label = 0, labels = 0;
    bool digits = true;
    for (size_t i = 0; i < n; i++) {
        if (h[i] == '.') {
            if (label == 0)
                return false;
            labels++;
            label = 0;
            digits = true;
            continue;
        }
        if (++label > 63)
            return false;
        digits = digits && h[i] >= '0' && h[i] <= '9';
    }
    return label > 0 && labels >= 1 && (!digits || ipv4_literal(h, n));
}

static void
host_emit(struct uriscan *u)
{
    size_t n = u->host_len;
    while (n > 0 && u->host[n - 1] == '.')
        n--;
    if (!u->host_bad && n > 0 && host_ok(u->host, n)) {
        u->hosts++;
        u->found(u->arg, u->host, n);
    }
    u->host_len = 0;
    u->host_bad = false;
}

static void
host_start(struct uriscan *u, bool scheme, const char *pre)
{
    u->url = URL_HOST;
    u->url_scheme = scheme;
    u->host_bad = false;
    u->host_len = strlen(pre);
    memcpy(u->host, pre, u->host_len);
}

static bool
window_ends(const struct uriscan *u, const char *s)
{
    size_t k = strlen(s);
    return memcmp(u->window + sizeof(u->window) - k, s, k) == 0;
}

/* Inside a URL's authority: true when the byte was used up. */
static bool
url_authority(struct uriscan *u, char c)
{
    if (u->url == URL_HOST && host_char(c)) {
        if (u->host_len >= URISCAN_HOST_MAX)
            u->host_bad = true;
        else
            u->host[u->host_len++] = lower(c);
        return true;
    }
    if (c == '@' && u->url_scheme) { /* what came before was user[:password] */
        host_start(u, true, "");
        return true;
    }
    if (u->url == URL_HOST && c == ':' && u->url_scheme) {
        u->url = URL_AFTER_COLON; /* a port, or a password */
        return true;
    }
    if (u->url == URL_AFTER_COLON && !url_end(c) && c != '/' && c != '?' && c != '#')
        return true;
    host_emit(u);
    u->url = url_end(c) ? URL_NONE : URL_SKIP;
    return false;
}

static void
url_char(struct uriscan *u, char c)
{
    if ((u->url == URL_HOST || u->url == URL_AFTER_COLON) && url_authority(u, c))
        return;
    if (u->url == URL_SKIP && url_end(c))
        u->url = URL_NONE;
    memmove(u->window, u->window + 1, sizeof(u->window) - 1);
    char lc = lower(c);
    u->window[sizeof(u->window) - 1] = lc;
    /* the patterns end in '/' or '.': no comparison for any other byte */
    if (lc == '/' && (window_ends(u, "http://") || window_ends(u, "https://"))) {
        host_start(u, true, "");
    } else if (lc == '.' && u->url == URL_NONE && window_ends(u, "www.") &&
               !host_char(u->window[sizeof(u->window) - 5])) {
        host_start(u, false, "www.");
    }
}

/* A percent escape in a host ended without being one: its bytes as they came. */
static void
url_escape_flush(struct uriscan *u)
{
    unsigned n = u->pct;
    u->pct = 0;
    if (n >= 1)
        url_char(u, '%');
    if (n == 2)
        url_char(u, u->pct_hex);
}

/* One byte of decoded text, for URL recognition. In a host, %XX is the byte it encodes, as a
 * browser reads it (http://%73pam.example/ is spam.example); one that is no host character ends
 * the host. */
static void
url_byte(struct uriscan *u, char c)
{
    if (u->url != URL_HOST || (u->pct == 0 && c != '%')) {
        url_char(u, c);
        return;
    }
    if (u->pct == 0) {
        u->pct = 1;
        return;
    }
    if (u->pct == 1 && hex_value(c) >= 0) {
        u->pct_hex = c;
        u->pct = 2;
        return;
    }
    if (u->pct == 2 && hex_value(c) >= 0) {
        char d = (char)(hex_value(u->pct_hex) << 4 | hex_value(c));
        u->pct = 0;
        url_char(u, host_char(d) ? d : (char)0x80);
        return;
    }
    url_escape_flush(u); /* its '%' ended the host */
    url_char(u, c);
}

/* --- decoding --- */

/* HTML character references, decoded the way a browser reads an href before URL recognition
 * sees the text (spam writes http&#58;//spam&#46;example/ to hide a link from scanners): numeric
 * ones (&#46; &#x2E;, the ';' optional) and the named ones that spell a URL's structure
 * (&period; &colon; &sol;). Anything else goes through as it came. */

static bool
ent_numeric(const struct uriscan *u)
{
    return u->ent_len >= 2 && u->ent[1] == '#';
}

static bool
ent_hex(const struct uriscan *u)
{
    return u->ent_len >= 3 && u->ent[1] == '#' && lower(u->ent[2]) == 'x';
}

/* Whether c extends the reference being read (u->ent holds it from its '&'). */
static bool
ent_continues(const struct uriscan *u, char c)
{
    if (u->ent_len >= sizeof(u->ent))
        return false;
    if (u->ent_len == 1)
        return c == '#' || (lower(c) >= 'a' && lower(c) <= 'z');
    if (!ent_numeric(u))
        return lower(c) >= 'a' && lower(c) <= 'z';
    if (u->ent_len == 2 && lower(c) == 'x')
        return true;
    return ent_hex(u) ? hex_value(c) >= 0 : c >= '0' && c <= '9';
}

/* The byte the reference in u->ent stands for (0x80 for any non-ASCII character: it ends a URL),
 * or -1 when it is not one. */
static int
ent_value(const struct uriscan *u, bool semicolon)
{
    if (!ent_numeric(u)) {
        static const struct {
            const char *name;
            char c;
        } named[] = {{"period", '.'}, {"colon", ':'}, {"sol", '/'}};
        for (size_t i = 0; semicolon && i < ARRAY_SIZE(named); i++)
            if (u->ent_len - 1 == strlen(named[i].name) &&
                memcmp(u->ent + 1, named[i].name, u->ent_len - 1) == 0)
                return named[i].c;
        return -1;
    }
    size_t start = ent_hex(u) ? 3 : 2;
    if (u->ent_len == start)
        return -1; /* "&#" or "&#x" alone */
    uint32_t v = 0;
    for (size_t i = start; i < u->ent_len; i++)
        v = MOAT_MIN(v * (start == 3 ? 16u : 10u) + (uint32_t)hex_value(u->ent[i]), 0x110000u);
    return v > 0 && v < 0x80 ? (int)v : 0x80;
}

/* What was read of a reference that is none: its bytes as they came. */
static void
ent_flush(struct uriscan *u)
{
    size_t n = u->ent_len;
    u->ent_len = 0;
    for (size_t i = 0; i < n; i++)
        url_byte(u, u->ent[i]);
}

static void
text_byte(struct uriscan *u, char c)
{
    if (u->ent_len == 0) {
        if (c == '&')
            u->ent[u->ent_len++] = c;
        else
            url_byte(u, c);
        return;
    }
    if (ent_continues(u, c)) {
        u->ent[u->ent_len++] = c;
        return;
    }
    int v = ent_value(u, c == ';');
    if (v >= 0) {
        u->ent_len = 0;
        url_byte(u, (char)v);
        if (c != ';')
            text_byte(u, c);
        return;
    }
    ent_flush(u);
    text_byte(u, c);
}

/* A part ends: a host in progress is complete, nothing carries over into the next part. */
static void
text_end(struct uriscan *u)
{
    ent_flush(u); /* a reference cut by the part's end is text */
    url_escape_flush(u);
    if (u->url == URL_HOST || u->url == URL_AFTER_COLON)
        host_emit(u);
    u->url = URL_NONE;
    memset(u->window, 0, sizeof(u->window));
    u->qp_state = 0;
    u->b64_bits = 0;
    u->b64_n = 0;
}

static void
qp_byte(struct uriscan *u, char c)
{
    switch (u->qp_state) {
    case 0:
        if (c == '=')
            u->qp_state = 1;
        else
            text_byte(u, c);
        return;
    case 1:
        if (hex_value(c) < 0) { /* not an escape: the '=' is literal */
            u->qp_state = 0;
            text_byte(u, '=');
            qp_byte(u, c);
            return;
        }
        u->qp_hex = c;
        u->qp_state = 2;
        return;
    default:
        u->qp_state = 0;
        if (hex_value(c) < 0) {
            text_byte(u, '=');
            text_byte(u, u->qp_hex);
            qp_byte(u, c);
            return;
        }
        text_byte(u, (char)(hex_value(u->qp_hex) << 4 | hex_value(c)));
        return;
    }
}

static void
qp_line_end(struct uriscan *u)
{
    if (u->qp_state == 1) { /* a soft line break: the line goes on */
        u->qp_state = 0;
        return;
    }
    if (u->qp_state == 2) {
        text_byte(u, '=');
        text_byte(u, u->qp_hex);
    }
    u->qp_state = 0;
    text_byte(u, '\n');
}

static int
b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static void
b64_byte(struct uriscan *u, char c)
{
    if (c == '=') { /* padding: what the quantum holds so far is complete */
        if (u->b64_n == 2)
            text_byte(u, (char)(u->b64_bits >> 4));
        if (u->b64_n == 3) {
            text_byte(u, (char)(u->b64_bits >> 10));
            text_byte(u, (char)(u->b64_bits >> 2));
        }
        u->b64_n = 0;
        u->b64_bits = 0;
        return;
    }
    int v = b64_value(c);
    if (v < 0) /* line breaks and junk are skipped, as RFC 2045 §6.8 says */
        return;
    u->b64_bits = (u->b64_bits << 6 | (uint32_t)v) & 0xffffff;
    if (++u->b64_n < 4)
        return;
    text_byte(u, (char)(u->b64_bits >> 16));
    text_byte(u, (char)(u->b64_bits >> 8));
    text_byte(u, (char)u->b64_bits);
    u->b64_n = 0;
    u->b64_bits = 0;
}

static void
body_text(struct uriscan *u, const char *p, size_t n, bool complete)
{
    for (size_t i = 0; i < n; i++) {
        switch ((enum cte)u->cte) {
        case CTE_NONE:
            text_byte(u, p[i]);
            break;
        case CTE_QP:
            qp_byte(u, p[i]);
            break;
        case CTE_B64:
            b64_byte(u, p[i]);
            break;
        }
    }
    if (!complete)
        return;
    if (u->cte == CTE_QP)
        qp_line_end(u);
    else if (u->cte == CTE_NONE)
        text_byte(u, '\n');
}

/* --- MIME --- */

static void
entity_begin(struct uriscan *u)
{
    text_end(u);
    if (++u->parts > u->lim.max_parts) {
        u->capped = URISCAN_CAP_PARTS;
        u->where = W_STOPPED;
        return;
    }
    u->where = W_HEADERS;
    u->ctype = CT_TEXT;
    u->cte = CTE_NONE;
    u->next_blen = 0;
    u->header_len = 0;
    u->header_keep = false;
}

/* Skip spaces, tabs and (unnested) comments. */
static size_t
skip_cfws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '(')) {
        if (p[i] == '(') {
            while (i < n && p[i] != ')')
                i++;
        }
        if (i < n)
            i++;
    }
    return i;
}

static size_t
token_end(const char *p, size_t n, size_t i)
{
    while (i < n && !url_end(p[i]) && p[i] != ';' && p[i] != '/' && p[i] != '=')
        i++;
    return i;
}

static void
parse_boundary(struct uriscan *u, const char *p, size_t n)
{
    char v[URISCAN_BOUNDARY_MAX + 1];
    size_t k = 0;
    if (n > 0 && p[0] == '"') {
        for (size_t i = 1; i < n && p[i] != '"'; i++) {
            if (p[i] == '\\' && i + 1 < n)
                i++;
            if (k >= URISCAN_BOUNDARY_MAX)
                return;
            v[k++] = p[i];
        }
    } else {
        size_t e = token_end(p, n, 0);
        if (e > URISCAN_BOUNDARY_MAX)
            return;
        memcpy(v, p, e);
        k = e;
    }
    if (k == 0)
        return;
    memcpy(u->next_boundary, v, k);
    u->next_blen = k;
}

/* "Content-Type: type/subtype; name=value; ..." */
static void
parse_ctype(struct uriscan *u, const char *p, size_t n)
{
    size_t i = skip_cfws(p, n, 0), t = token_end(p, n, i);
    const char *type = p + i;
    size_t tlen = t - i;
    i = skip_cfws(p, n, t);
    if (i < n && p[i] == '/')
        i = skip_cfws(p, n, i + 1);
    bool rfc822 = prefix_nocase(p + i, n - i, "rfc822") || prefix_nocase(p + i, n - i, "global");
    if (tlen == 9 && prefix_nocase(type, tlen, "multipart"))
        u->ctype = CT_MULTIPART;
    else if (tlen == 7 && prefix_nocase(type, tlen, "message") && rfc822)
        u->ctype = CT_MESSAGE;
    else if (tlen == 4 && prefix_nocase(type, tlen, "text"))
        u->ctype = CT_TEXT;
    else
        u->ctype = CT_OTHER;
    for (;;) {
        const char *semi = memchr(p + i, ';', n - i);
        if (semi == NULL)
            return;
        i = skip_cfws(p, n, (size_t)(semi - p) + 1);
        size_t e = token_end(p, n, i);
        bool is_boundary = e - i == 8 && prefix_nocase(p + i, 8, "boundary");
        i = skip_cfws(p, n, e);
        if (i >= n || p[i] != '=')
            continue;
        i = skip_cfws(p, n, i + 1);
        if (is_boundary)
            parse_boundary(u, p + i, n - i);
    }
}

static void
header_field_end(struct uriscan *u)
{
    if (!u->header_keep)
        return;
    u->header_keep = false;
    const char *p = u->header, *colon = memchr(p, ':', u->header_len);
    if (colon == NULL)
        return;
    size_t i = (size_t)(colon - p) + 1, n = u->header_len;
    if (prefix_nocase(p, n, "content-type")) {
        parse_ctype(u, p + i, n - i);
        return;
    }
    i = skip_cfws(p, n, i);
    if (prefix_nocase(p + i, n - i, "quoted-printable"))
        u->cte = CTE_QP;
    else if (prefix_nocase(p + i, n - i, "base64"))
        u->cte = CTE_B64;
    else
        u->cte = CTE_NONE;
}

static void
header_append(struct uriscan *u, const char *p, size_t n)
{
    if (!u->header_keep)
        return;
    n = MOAT_MIN(n, sizeof(u->header) - u->header_len);
    memcpy(u->header + u->header_len, p, n);
    u->header_len += n;
}

static bool
level_push(struct uriscan *u, const char *boundary, size_t blen)
{
    if (u->depth >= u->lim.max_depth || u->depth >= URISCAN_DEPTH_MAX) {
        if (u->capped == URISCAN_CAP_NONE)
            u->capped = URISCAN_CAP_DEPTH; /* this entity is skipped, the rest is scanned */
        return false;
    }
    struct uriscan_level *l = &u->levels[u->depth++];
    memcpy(l->boundary, boundary, blen);
    l->blen = blen;
    return true;
}

static void
headers_end(struct uriscan *u)
{
    switch ((enum ctype)u->ctype) {
    case CT_MULTIPART:
        u->where = W_SKIP; /* the preamble, or an entity too deep or without a boundary */
        if (u->next_blen > 0)
            level_push(u, u->next_boundary, u->next_blen);
        return;
    case CT_MESSAGE:
        u->where = W_SKIP;
        if (level_push(u, "", 0))
            entity_begin(u);
        return;
    case CT_TEXT:
        text_end(u);
        u->where = W_TEXT;
        return;
    case CT_OTHER:
        u->where = W_SKIP;
        return;
    }
}

static void
header_line(struct uriscan *u, const char *p, size_t n, bool first)
{
    if (!first || (n > 0 && (p[0] == ' ' || p[0] == '\t'))) {
        header_append(u, p, n); /* the rest of a long line, or a folded field */
        return;
    }
    header_field_end(u);
    if (n == 0) {
        headers_end(u);
        return;
    }
    u->header_keep =
        prefix_nocase(p, n, "content-type:") || prefix_nocase(p, n, "content-transfer-encoding:");
    u->header_len = 0;
    header_append(u, p, n);
}

/* "--boundary" or "--boundary--" of an enclosing multipart, with optional trailing blanks. */
static bool
boundary_line(struct uriscan *u, const char *p, size_t n)
{
    for (size_t d = u->depth; d-- > 0;) {
        const struct uriscan_level *l = &u->levels[d];
        if (l->blen == 0 || n < 2 + l->blen || memcmp(p + 2, l->boundary, l->blen) != 0)
            continue;
        size_t i = 2 + l->blen;
        bool close = n - i >= 2 && p[i] == '-' && p[i + 1] == '-';
        i += close ? 2 : 0;
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i != n)
            continue;
        text_end(u);
        u->depth = close ? d : d + 1; /* inner entities end with it */
        if (close)
            u->where = W_SKIP; /* the epilogue */
        else
            entity_begin(u);
        return true;
    }
    return false;
}

/* One line, or one piece of a long line (complete: its end is the end of the line). */
static void
scan_piece(struct uriscan *u, const char *p, size_t n, bool complete)
{
    bool first = !u->line_cont;
    if (first && n >= 2 && p[0] == '-' && p[1] == '-' && boundary_line(u, p, n))
        return;
    switch ((enum where)u->where) {
    case W_HEADERS:
        header_line(u, p, n, first);
        return;
    case W_TEXT:
        body_text(u, p, n, complete);
        return;
    case W_SKIP:
    case W_STOPPED:
        return;
    }
}

static void
line_done(struct uriscan *u, bool complete)
{
    size_t n = u->line_len;
    if (complete && n > 0 && u->line[n - 1] == '\r')
        n--;
    scan_piece(u, u->line, n, complete);
    u->line_len = 0;
    u->line_cont = !complete;
}

void
uriscan_init(struct uriscan *u, const struct uriscan_limits *lim, uriscan_found_fn found, void *arg)
{
    memset(u, 0, sizeof(*u));
    u->lim = *lim;
    u->found = found;
    u->arg = arg;
    u->parts = 0;
    entity_begin(u);
}

void
uriscan_finish(struct uriscan *u)
{
    if (u->where == W_STOPPED)
        return;
    if (u->line_len > 0)
        line_done(u, true);
    if (u->where == W_HEADERS)
        header_field_end(u);
    text_end(u);
}

void
uriscan_feed(struct uriscan *u, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && u->where != W_STOPPED) {
        if (u->bytes >= u->lim.max_bytes) {
            uriscan_finish(u); /* what was taken in is looked at */
            u->capped = URISCAN_CAP_BYTES;
            u->where = W_STOPPED;
            return;
        }
        size_t take = (size_t)MOAT_MIN((uint64_t)(n - i), u->lim.max_bytes - u->bytes);
        take = MOAT_MIN(take, sizeof(u->line) - u->line_len);
        const char *lf = memchr(p + i, '\n', take);
        size_t k = lf ? (size_t)(lf - (p + i)) : take;
        memcpy(u->line + u->line_len, p + i, k);
        u->line_len += k;
        u->bytes += k + (lf ? 1 : 0);
        i += k + (lf ? 1 : 0);
        if (lf != NULL)
            line_done(u, true);
        else if (u->line_len == sizeof(u->line))
            line_done(u, false);
    }
}

const char *
uriscan_cap_name(enum uriscan_cap c)
{
    switch (c) {
    case URISCAN_CAP_NONE:
        return "none";
    case URISCAN_CAP_BYTES:
        return "bytes";
    case URISCAN_CAP_PARTS:
        return "parts";
    case URISCAN_CAP_DEPTH:
        return "depth";
    }
    return "?";
}
