/*
 * smtp_data.h: the smuggling-safe DATA canonicaliser. Client bytes after 354 go in, in chunks of
 * any size; canonical CRLF lines with dot-stuffing recomputed come out, and the only end of data
 * is CRLF "." CRLF. Bare LF is normalised or rejected, bare CR and NUL are rejected (nothing more
 * is emitted once a message is rejected), and the size is counted. Pure and resumable.
 */
#ifndef MOAT_SMTP_DATA_H
#define MOAT_SMTP_DATA_H

#include "common.h"

/* The most output one input byte can produce ("..\r\n" for a literal dot line). */
#define SMTP_DATA_EXPANSION 4

enum smtp_data_error {
    SMTP_DATA_OK = 0,
    SMTP_DATA_BARE_LF, /* reject mode only */
    SMTP_DATA_BARE_CR,
    SMTP_DATA_NUL,
    SMTP_DATA_TOO_BIG
};

enum smtp_data_status { SMTP_DATA_MORE = 0, SMTP_DATA_END };

struct smtp_data {
    int where;      /* position inside the current line (private) */
    bool prev_crlf; /* the previous line ended in CRLF (true at the start) */
    bool reject_bare_lf;
    uint64_t size_max;          /* 0 = unlimited */
    uint64_t size;              /* canonical bytes emitted so far (counted even after an error) */
    uint64_t bare_lf;           /* bare LFs seen (normalised or not) */
    enum smtp_data_error error; /* the first reason the message is refused */
};

void smtp_data_init(struct smtp_data *d, bool reject_bare_lf, uint64_t size_max);
/* Consume input (in, n) and write canonical bytes to out (cap >= SMTP_DATA_EXPANSION).
 * Stops at the end of data (SMTP_DATA_END; *used_out includes the terminator), when the input
 * is used up, or when out has less than SMTP_DATA_EXPANSION bytes left (SMTP_DATA_MORE with
 * *used_out < n). Once d->error is set, no more output is produced. */
enum smtp_data_status smtp_data_feed(struct smtp_data *d, const char *in, size_t n, char *out,
                                     size_t cap, size_t *used_out, size_t *out_len);
const char *smtp_data_error_name(enum smtp_data_error e);

#endif
