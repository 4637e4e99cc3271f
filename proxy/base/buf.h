/*
 * buf.h: a byte buffer with a hard capacity fixed at init. Storage is allocated (not zeroed) on
 * first use and released when the buffer empties, so idle sessions hold none; consuming from
 * the front moves no bytes until the room is needed at the tail. Also the pure line splitter used
 * by every protocol: find one LF-terminated line in (p, n) without copying.
 */
#ifndef MOAT_BUF_H
#define MOAT_BUF_H

#include "common.h"

struct buf {
    char *data;  /* the first unconsumed byte (NULL while empty) */
    size_t len;  /* bytes at data */
    size_t cap;  /* hard cap; never grows */
    char *store; /* the allocation: cap bytes, data - store of them consumed */
};

void buf_init(struct buf *b, size_t cap);
void buf_free(struct buf *b);
size_t buf_room(const struct buf *b);
/* Append all of (p, n) or nothing: returns -1 when it would exceed the cap. */
int buf_append(struct buf *b, const char *p, size_t n);
/* Reserve room for a read: returns a pointer to buf_tail_room() writable bytes, at least half of
 * buf_room() (NULL if full). */
char *buf_tail(struct buf *b);
size_t buf_tail_room(const struct buf *b);
void buf_commit(struct buf *b, size_t n);
void buf_consume(struct buf *b, size_t n);
void buf_clear(struct buf *b);

enum line_status { LINE_OK = 0, LINE_MORE, LINE_TOO_LONG };

/* Look for a line in (p, n). LINE_OK: *len_out is the line without its terminator, *used_out
 * the bytes including it, *crlf_out whether it ended in CRLF (else bare LF). LINE_MORE: no LF
 * yet and n < max. LINE_TOO_LONG: no LF within max bytes (max counts the terminator). */
enum line_status buf_find_line(const char *p, size_t n, size_t max, size_t *len_out,
                               size_t *used_out, bool *crlf_out);

#endif
