/*
 * uriscan.h: finds the host names in the URLs of a message's text, for URI block lists. Message
 * bytes go in, in chunks of any size; host names (lower case, validated) and IPv4 address
 * literals (dotted decimal, as in http://192.0.2.1/) come out through a callback. It follows the
 * MIME structure (multipart boundaries, message/rfc822), decodes quoted-printable and base64 text
 * parts and the HTML character references in them, skips everything else, and stops at configured
 * caps on depth, parts and bytes. Pure and resumable: fixed memory, no allocation, no I/O.
 */
#ifndef MOAT_URISCAN_H
#define MOAT_URISCAN_H

#include "common.h"

#define URISCAN_LINE_MAX 1000   /* a longer line is looked at in pieces of this size */
#define URISCAN_HEADER_MAX 512  /* the part of a Content-Type / -Transfer-Encoding field kept */
#define URISCAN_BOUNDARY_MAX 70 /* RFC 2046 §5.1.1 */
#define URISCAN_DEPTH_MAX 16    /* the most nested entities max_depth may allow */
#define URISCAN_HOST_MAX 253

/* Why scanning stopped early (the rest of the message was not looked at). */
enum uriscan_cap { URISCAN_CAP_NONE = 0, URISCAN_CAP_BYTES, URISCAN_CAP_PARTS, URISCAN_CAP_DEPTH };

struct uriscan_limits {
    uint64_t max_bytes; /* message bytes looked at */
    uint32_t max_parts; /* MIME entities (the message itself is one) */
    uint32_t max_depth; /* nested entities, at most URISCAN_DEPTH_MAX */
};

/* One host name or IPv4 literal found (len <= URISCAN_HOST_MAX, lower case, not NUL-terminated). */
typedef void (*uriscan_found_fn)(void *arg, const char *host, size_t len);

struct uriscan_level {
    char boundary[URISCAN_BOUNDARY_MAX + 1];
    size_t blen; /* 0: a message/rfc822 level (ends with its parent) */
};

/* Private: embed it, call uriscan_init, read only the counters. */
struct uriscan {
    struct uriscan_limits lim;
    uriscan_found_fn found;
    void *arg;
    /* the current line */
    char line[URISCAN_LINE_MAX];
    size_t line_len;
    bool line_cont; /* this piece continues a line that was too long */
    /* MIME */
    int where; /* headers, text body, skipped body */
    struct uriscan_level levels[URISCAN_DEPTH_MAX];
    size_t depth;
    char header[URISCAN_HEADER_MAX];
    size_t header_len;
    bool header_keep; /* the field being read is one we parse */
    int ctype;        /* what the entity's headers said so far */
    int cte;
    char next_boundary[URISCAN_BOUNDARY_MAX + 1];
    size_t next_blen;
    /* decoding */
    unsigned qp_state; /* 0, 1: '=' seen, 2: '=' and one hex digit */
    char qp_hex;
    uint32_t b64_bits;
    unsigned b64_n;
    /* an HTML character reference being read, from its '&' */
    char ent[12];
    size_t ent_len;
    /* URL recognition in decoded text */
    char window[8];  /* the last bytes, lower case */
    int url;         /* not in a URL, in a host, skipping the rest of a URL */
    bool url_scheme; /* the host came after "scheme://": userinfo@ may precede it */
    unsigned pct;    /* a percent escape in the host: 1 after '%', 2 after its first digit */
    char pct_hex;
    char host[URISCAN_HOST_MAX + 1];
    size_t host_len;
    bool host_bad;
    /* counters */
    uint64_t bytes;
    uint32_t parts;
    uint32_t hosts; /* host names reported */
    enum uriscan_cap capped;
};

void uriscan_init(struct uriscan *u, const struct uriscan_limits *lim, uriscan_found_fn found,
                  void *arg);
void uriscan_feed(struct uriscan *u, const char *p, size_t n);
/* The message ended: what is still buffered is looked at. */
void uriscan_finish(struct uriscan *u);
const char *uriscan_cap_name(enum uriscan_cap c);

#endif
