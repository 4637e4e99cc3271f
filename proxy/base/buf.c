/*
 * buf.c: capped buffers and the line splitter. A buffer's storage is malloc'd (never zeroed:
 * only the bytes written are touched) at its full cap on first use and freed when it drains, so
 * memory per session is bounded by the caps and idle sessions hold nothing. The line splitter is
 * pure: pointer and length in, lengths out.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void
buf_init(struct buf *b, size_t cap)
{
    b->data = b->store = NULL;
    b->len = 0;
    b->cap = cap;
}

void
buf_free(struct buf *b)
{
    free(b->store);
    b->data = b->store = NULL;
    b->len = 0;
}

size_t
buf_room(const struct buf *b)
{
    return b->cap - b->len;
}

static size_t
tail_room(const struct buf *b)
{
    return b->store == NULL ? b->cap : b->cap - (size_t)(b->data - b->store) - b->len;
}

/* Storage with at least need contiguous bytes free after the data: the data moves to the front
 * only when the tail is short. */
static void
buf_ensure(struct buf *b, size_t need)
{
    if (b->store == NULL) {
        b->store = b->data = xmalloc(b->cap ? b->cap : 1);
        return;
    }
    if (tail_room(b) < need) {
        memmove(b->store, b->data, b->len);
        b->data = b->store;
    }
}

int
buf_append(struct buf *b, const char *p, size_t n)
{
    if (n > buf_room(b))
        return -1;
    if (n == 0)
        return 0;
    buf_ensure(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

char *
buf_tail(struct buf *b)
{
    size_t room = buf_room(b);
    if (room == 0)
        return NULL;
    buf_ensure(b, (room + 1) / 2); /* amortised: move only when half the room is at the front */
    return b->data + b->len;
}

size_t
buf_tail_room(const struct buf *b)
{
    return tail_room(b);
}

void
buf_commit(struct buf *b, size_t n)
{
    MOAT_ASSERT(n <= tail_room(b));
    b->len += n;
}

void
buf_consume(struct buf *b, size_t n)
{
    MOAT_ASSERT(n <= b->len);
    if (n == b->len) {
        buf_free(b);
        return;
    }
    b->data += n;
    b->len -= n;
}

void
buf_clear(struct buf *b)
{
    buf_free(b);
}

enum line_status
buf_find_line(const char *p, size_t n, size_t max, size_t *len_out, size_t *used_out,
              bool *crlf_out)
{
    size_t limit = MOAT_MIN(n, max);
    const char *lf = limit ? memchr(p, '\n', limit) : NULL;
    if (lf == NULL)
        return n >= max ? LINE_TOO_LONG : LINE_MORE;
    size_t end = (size_t)(lf - p);
    bool crlf = end > 0 && p[end - 1] == '\r';
    *len_out = crlf ? end - 1 : end;
    *used_out = end + 1;
    *crlf_out = crlf;
    return LINE_OK;
}
