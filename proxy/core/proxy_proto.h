/*
 * proxy_proto.h: builds HAProxy PROXY protocol headers (v1 text, v2 binary with the SSL TLV) that
 * moat sends first on a backend connection. Pure: addresses in, bytes out; no I/O.
 */
#ifndef MOAT_PROXY_PROTO_H
#define MOAT_PROXY_PROTO_H

#include <sys/socket.h>

#include "common.h"

#define PROXY_V1_MAX 108
#define PROXY_V2_MAX 256

struct proxy_tls_info {
    bool tls;            /* the client side was TLS: PP2_CLIENT_SSL is set */
    const char *version; /* "TLSv1.3" or NULL */
    const char *cipher;  /* or NULL */
};

/* Return the header length, or 0 when it does not fit, an address is not IPv4/IPv6 or the
 * families differ: never "PROXY UNKNOWN" nor UNSPEC (the backend would fall back to the
 * connection's own address, moat's, which it trusts). */
size_t proxy_v1_build(char *out, size_t cap, const struct sockaddr *src,
                      const struct sockaddr *dst);
size_t proxy_v2_build(unsigned char *out, size_t cap, const struct sockaddr *src,
                      const struct sockaddr *dst, const struct proxy_tls_info *tls);

#endif
