/*
 * smtp_data.c: the DATA canonicaliser (see smtp_data.h). A byte-driven state machine over one
 * line at a time: it strips the client's dot-stuffing, re-stuffs, re-terminates with CRLF, and
 * recognises CRLF "." CRLF as the only end of data, so no bare-LF/CR variant (SMTP smuggling) can
 * end a message early. It never buffers a line and never emits after the message is refused.
 */
#include <string.h>

#include "smtp_data.h"

enum data_where {
    W_START = 0, /* nothing of this line seen yet */
    W_DOT,       /* the line started with '.' */
    W_DOT_CR,    /* "." then CR */
    W_LINE,      /* inside the line */
    W_CR         /* CR seen inside the line (or at its start), LF expected */
};

void
smtp_data_init(struct smtp_data *d, bool reject_bare_lf, uint64_t size_max)
{
    memset(d, 0, sizeof(*d));
    d->where = W_START;
    d->prev_crlf = true;
    d->reject_bare_lf = reject_bare_lf;
    d->size_max = size_max;
}

const char *
smtp_data_error_name(enum smtp_data_error e)
{
    switch (e) {
    case SMTP_DATA_OK:
        return "ok";
    case SMTP_DATA_BARE_LF:
        return "bare_lf";
    case SMTP_DATA_BARE_CR:
        return "bare_cr";
    case SMTP_DATA_NUL:
        return "nul";
    case SMTP_DATA_TOO_BIG:
        return "too_big";
    }
    return "?";
}

static void
data_fail(struct smtp_data *d, enum smtp_data_error e)
{
    if (d->error == SMTP_DATA_OK)
        d->error = e;
}

static void
data_put(struct smtp_data *d, char *out, size_t *o, const char *p, size_t n)
{
    d->size += n;
    if (d->size_max > 0 && d->size > d->size_max)
        data_fail(d, SMTP_DATA_TOO_BIG);
    if (d->error != SMTP_DATA_OK)
        return;
    memcpy(out + *o, p, n);
    *o += n;
}

static void
data_line_end(struct smtp_data *d, char *out, size_t *o, bool crlf)
{
    if (!crlf) {
        d->bare_lf++;
        if (d->reject_bare_lf)
            data_fail(d, SMTP_DATA_BARE_LF);
    }
    data_put(d, out, o, "\r\n", 2);
    d->prev_crlf = crlf;
    d->where = W_START;
}

/* Inside a line: copy a run of ordinary bytes, or handle one CR / LF / NUL. Returns bytes used. */
static size_t
data_in_line(struct smtp_data *d, const char *in, size_t n, char *out, size_t *o, size_t room)
{
    char c = in[0];
    if (c == '\r') {
        d->where = W_CR;
        return 1;
    }
    if (c == '\n') {
        data_line_end(d, out, o, false);
        return 1;
    }
    if (c == '\0') {
        data_fail(d, SMTP_DATA_NUL);
        return 1;
    }
    size_t j = 1, max = MOAT_MIN(n, room);
    while (j < max && in[j] != '\r' && in[j] != '\n' && in[j] != '\0')
        j++;
    data_put(d, out, o, in, j);
    return j;
}

/* One step at the start of a line or after its dot. Returns bytes used (0: state changed, the
 * same byte is looked at again). */
static size_t
data_line_head(struct smtp_data *d, char c, char *out, size_t *o)
{
    switch ((enum data_where)d->where) {
    case W_START:
        d->where = c == '.' ? W_DOT : W_LINE;
        return c == '.' ? 1 : 0;
    case W_DOT:
        if (c == '\r') {
            d->where = W_DOT_CR;
            return 1;
        }
        if (c == '\n') { /* "." ended by a bare LF: never an end, a literal dot line */
            data_put(d, out, o, "..", 2);
            data_line_end(d, out, o, false);
            return 1;
        }
        d->where = W_LINE; /* the client's stuffing dot is dropped */
        if (c == '.') {
            data_put(d, out, o, "..", 2);
            return 1;
        }
        return 0;
    case W_DOT_CR:
        /* "." CR then not LF: a bare CR */
        data_fail(d, SMTP_DATA_BARE_CR);
        d->where = W_LINE;
        return 0;
    case W_CR:
        data_fail(d, SMTP_DATA_BARE_CR);
        d->where = W_LINE;
        return 0;
    case W_LINE:
        break;
    }
    return 0;
}

enum smtp_data_status
smtp_data_feed(struct smtp_data *d, const char *in, size_t n, char *out, size_t cap,
               size_t *used_out, size_t *out_len)
{
    size_t i = 0, o = 0;
    enum smtp_data_status st = SMTP_DATA_MORE;
    while (i < n && cap - o >= SMTP_DATA_EXPANSION) {
        char c = in[i];
        if (d->where == W_LINE) {
            i += data_in_line(d, in + i, n - i, out, &o, cap - o);
        } else if ((d->where == W_CR || d->where == W_DOT_CR) && c == '\n') {
            i++;
            if (d->where == W_DOT_CR && d->prev_crlf) {
                st = SMTP_DATA_END;
                break;
            }
            if (d->where == W_DOT_CR) /* "." CRLF after a bare LF line: literal */
                data_put(d, out, &o, "..", 2);
            data_line_end(d, out, &o, true);
        } else {
            i += data_line_head(d, c, out, &o);
        }
    }
    *used_out = i;
    *out_len = o;
    return st;
}
