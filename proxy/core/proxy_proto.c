/*
 * proxy_proto.c: PROXY protocol v1/v2 header builders (haproxy doc/proxy-protocol.txt §2.1,
 * §2.2). v2 carries PP2_TYPE_SSL with PP2_CLIENT_SSL when the client used TLS, so Dovecot treats
 * the session as secured. IPv4-mapped IPv6 addresses are sent as IPv4. Never UNKNOWN/UNSPEC:
 * the backend would take the connection's own (moat's, trusted) address as the client's.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "proxy_proto.h"

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Normalise to family + raw address + port; mapped IPv4 becomes AF_INET. */
static int
addr_raw(const struct sockaddr *sa, unsigned char raw[16], uint16_t *port_be)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        memcpy(raw, &a->sin_addr, 4);
        *port_be = a->sin_port;
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        *port_be = a->sin6_port;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            memcpy(raw, &a->sin6_addr.s6_addr[12], 4);
            return AF_INET;
        }
        memcpy(raw, &a->sin6_addr, 16);
        return AF_INET6;
    }
    return -1;
}

size_t
proxy_v1_build(char *out, size_t cap, const struct sockaddr *src, const struct sockaddr *dst)
{
    unsigned char s[16], d[16];
    uint16_t sp = 0, dp = 0;
    int fs = addr_raw(src, s, &sp), fd = addr_raw(dst, d, &dp);
    if (fs < 0 || fs != fd)
        return 0;
    char st[INET6_ADDRSTRLEN], dt[INET6_ADDRSTRLEN];
    inet_ntop(fs, s, st, sizeof(st));
    inet_ntop(fd, d, dt, sizeof(dt));
    int n = snprintf(out, cap, "PROXY %s %s %s %u %u\r\n", fs == AF_INET ? "TCP4" : "TCP6", st, dt,
                     ntohs(sp), ntohs(dp));
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t
put_tlv(unsigned char *p, size_t room, unsigned type, const void *v, size_t len)
{
    if (len + 3 > room || len > 0xffff)
        return 0;
    p[0] = (unsigned char)type;
    p[1] = (unsigned char)(len >> 8);
    p[2] = (unsigned char)len;
    memcpy(p + 3, v, len);
    return len + 3;
}

size_t
proxy_v2_build(unsigned char *out, size_t cap, const struct sockaddr *src,
               const struct sockaddr *dst, const struct proxy_tls_info *tls)
{
    unsigned char s[16], d[16];
    uint16_t sp = 0, dp = 0;
    int fs = addr_raw(src, s, &sp), fd = addr_raw(dst, d, &dp);
    if (cap < 16 + 36 || fs < 0 || fs != fd)
        return 0;
    memcpy(out, v2_sig, sizeof(v2_sig));
    out[12] = 0x21; /* version 2, PROXY */
    size_t pos = 16;
    if (fs == AF_INET) {
        out[13] = 0x11;
        memcpy(out + pos, s, 4);
        memcpy(out + pos + 4, d, 4);
        memcpy(out + pos + 8, &sp, 2);
        memcpy(out + pos + 10, &dp, 2);
        pos += 12;
    } else {
        out[13] = 0x21;
        memcpy(out + pos, s, 16);
        memcpy(out + pos + 16, d, 16);
        memcpy(out + pos + 32, &sp, 2);
        memcpy(out + pos + 34, &dp, 2);
        pos += 36;
    }
    if (tls != NULL && tls->tls) {
        /* PP2_TYPE_SSL: client flags, 4-byte verify (0 = ok), then sub-TLVs */
        unsigned char ssl[128];
        size_t sl = 0;
        ssl[sl++] = 0x01; /* PP2_CLIENT_SSL */
        memset(ssl + sl, 0, 4);
        sl += 4;
        if (tls->version != NULL)
            sl += put_tlv(ssl + sl, sizeof(ssl) - sl, 0x21, tls->version, strlen(tls->version));
        if (tls->cipher != NULL)
            sl += put_tlv(ssl + sl, sizeof(ssl) - sl, 0x23, tls->cipher, strlen(tls->cipher));
        size_t w = put_tlv(out + pos, cap - pos, 0x20, ssl, sl);
        if (w == 0)
            return 0;
        pos += w;
    }
    size_t len = pos - 16;
    out[14] = (unsigned char)(len >> 8);
    out[15] = (unsigned char)len;
    return pos;
}
