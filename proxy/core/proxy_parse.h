/*
 * proxy_parse.h: parses the HAProxy PROXY protocol header (v1 text, v2 binary with TLVs) that a
 * trusted load balancer sends first on a connection to moat. Pure and bounded: bytes in, the
 * real client's address out; it never allocates, never reads past the length it is given and
 * never accepts more than PROXY_V1_MAX / PROXY_PARSE_V2_MAX bytes of header.
 */
#ifndef MOAT_PROXY_PARSE_H
#define MOAT_PROXY_PARSE_H

#include <sys/socket.h>

#include "common.h"
#include "proxy_proto.h"

/* The largest v2 header accepted (16-byte preamble + addresses + TLVs); longer is PP_BAD. */
#define PROXY_PARSE_V2_MAX 1024
/* Bytes enough to tell the version and, for v1, to find the end of the line. */
#define PROXY_PARSE_PEEK (PROXY_PARSE_V2_MAX)

enum proxy_version { PROXY_VERSION_ANY = 0, PROXY_VERSION_V1, PROXY_VERSION_V2 };

enum proxy_parse_result {
    PP_OK = 0, /* a whole header: *used_out bytes */
    PP_MORE,   /* a valid beginning: read more bytes */
    PP_BAD     /* not a PROXY header of an accepted version, malformed, or too long */
};

struct proxy_header {
    enum proxy_version version;
    bool local; /* v2 LOCAL or v1 UNKNOWN: the balancer's own connection (health check) */
    struct sockaddr_storage src; /* the real client (unset when local) */
    socklen_t src_len;
    struct sockaddr_storage dst; /* the address the client connected to (unset when local) */
    socklen_t dst_len;
    /* v2 TLVs kept: what the balancer saw of the client's TLS, if it terminated it */
    bool ssl;             /* PP2_TYPE_SSL with PP2_CLIENT_SSL */
    char authority[256];  /* PP2_TYPE_AUTHORITY: the SNI host name ("" if none) */
    char ssl_version[32]; /* PP2_SUBTYPE_SSL_VERSION ("" if none) */
    char alpn[64];        /* PP2_TYPE_ALPN ("" if none) */
};

/* Parse the first n bytes of a connection. accept selects v1, v2 or either. On PP_OK fills *out
 * and the header's length in *used_out; the caller consumes exactly that many bytes. */
enum proxy_parse_result proxy_parse(const unsigned char *p, size_t n, enum proxy_version accept,
                                    struct proxy_header *out, size_t *used_out);
const char *proxy_version_name(enum proxy_version v);

#endif
