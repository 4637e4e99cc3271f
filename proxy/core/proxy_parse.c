/*
 * proxy_parse.c: PROXY protocol header parser (haproxy doc/proxy-protocol.txt §2.1 v1, §2.2 v2).
 * Strict: v1 is one line of at most 107 bytes with single spaces, addresses of the named family
 * and decimal ports; v2 has the signature, version 2, a known command and family, addresses that
 * fit the length and TLVs that tile the rest exactly. Anything else is PP_BAD: the caller closes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy_parse.h"

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[6] = "PROXY ";

const char *
proxy_version_name(enum proxy_version v)
{
    switch (v) {
    case PROXY_VERSION_ANY:
        return "any";
    case PROXY_VERSION_V1:
        return "v1";
    case PROXY_VERSION_V2:
        return "v2";
    }
    return "?";
}

/* Whether the n bytes at p are a prefix of sig (or sig a prefix of them). */
static bool
prefix_of(const unsigned char *p, size_t n, const void *sig, size_t len)
{
    return memcmp(p, sig, n < len ? n : len) == 0;
}

/* One space-terminated field of a v1 line into out (cap bytes with its NUL); 0 or -1. */
static int
v1_field(const char **pp, const char *end, char *out, size_t cap, char stop)
{
    const char *p = *pp;
    size_t i = 0;
    while (p < end && *p != stop) {
        if (i + 1 >= cap || *p == ' ')
            return -1;
        out[i++] = *p++;
    }
    if (i == 0 || p >= end)
        return -1;
    out[i] = '\0';
    *pp = p + 1;
    return 0;
}

static int
v1_port(const char *s, uint16_t *port_out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port_out = (uint16_t)v;
    return 0;
}

static int
v1_addr(int family, const char *text, uint16_t port, struct sockaddr_storage *ss,
        socklen_t *len_out)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        *len_out = sizeof(*a);
        return inet_pton(AF_INET, text, &a->sin_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    *len_out = sizeof(*a);
    return inet_pton(AF_INET6, text, &a->sin6_addr) == 1 ? 0 : -1;
}

/* The fields after "PROXY TCP4 " up to the CR at end. */
static enum proxy_parse_result
v1_addresses(int family, const char *p, const char *end, struct proxy_header *out)
{
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], sport[8], dport[8];
    uint16_t sp, dp;
    if (v1_field(&p, end, src, sizeof(src), ' ') != 0 ||
        v1_field(&p, end, dst, sizeof(dst), ' ') != 0 ||
        v1_field(&p, end, sport, sizeof(sport), ' ') != 0)
        return PP_BAD;
    /* the last field runs to the CR */
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= sizeof(dport))
        return PP_BAD;
    memcpy(dport, p, n);
    dport[n] = '\0';
    if (v1_port(sport, &sp) != 0 || v1_port(dport, &dp) != 0 ||
        v1_addr(family, src, sp, &out->src, &out->src_len) != 0 ||
        v1_addr(family, dst, dp, &out->dst, &out->dst_len) != 0)
        return PP_BAD;
    return PP_OK;
}

static enum proxy_parse_result
parse_v1(const unsigned char *p, size_t n, struct proxy_header *out, size_t *used_out)
{
    /* 107 bytes at most with the CRLF (PROXY_V1_MAX has room for a NUL): the CR by byte 106 */
    const size_t cr_max = PROXY_V1_MAX - 2;
    size_t lim = n < cr_max ? n : cr_max;
    size_t cr = 0;
    while (cr < lim && p[cr] != '\r') {
        if (p[cr] < 0x20 || p[cr] > 0x7e)
            return PP_BAD;
        cr++;
    }
    if (cr == lim)
        return n >= cr_max ? PP_BAD : PP_MORE;
    if (cr + 1 >= n)
        return PP_MORE;
    if (p[cr + 1] != '\n')
        return PP_BAD;
    const char *line = (const char *)p, *end = line + cr;
    out->version = PROXY_VERSION_V1;
    *used_out = cr + 2;
    const char *rest = line + sizeof(v1_sig);
    if (end - rest >= 7 && memcmp(rest, "UNKNOWN", 7) == 0 && (end - rest == 7 || rest[7] == ' ')) {
        out->local = true;
        return PP_OK;
    }
    if (end - rest < 5 || rest[4] != ' ')
        return PP_BAD;
    int family;
    if (memcmp(rest, "TCP4", 4) == 0)
        family = AF_INET;
    else if (memcmp(rest, "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return PP_BAD;
    return v1_addresses(family, rest + 5, end, out);
}

/* A TLV string value into out when it fits and is printable; otherwise left empty. */
static void
keep_text(char *out, size_t cap, const unsigned char *v, size_t len)
{
    if (len == 0 || len >= cap)
        return;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < 0x20 || v[i] > 0x7e)
            return;
    }
    memcpy(out, v, len);
    out[len] = '\0';
}

/* Sub-TLVs of PP2_TYPE_SSL: the version only. */
static int
v2_ssl(const unsigned char *v, size_t len, struct proxy_header *out)
{
    if (len < 5)
        return -1;
    out->ssl = (v[0] & 0x01) != 0;
    size_t pos = 5;
    while (pos < len) {
        if (len - pos < 3)
            return -1;
        size_t l = (size_t)v[pos + 1] << 8 | v[pos + 2];
        if (l > len - pos - 3)
            return -1;
        if (v[pos] == 0x21)
            keep_text(out->ssl_version, sizeof(out->ssl_version), v + pos + 3, l);
        pos += 3 + l;
    }
    return 0;
}

static int
v2_tlvs(const unsigned char *p, size_t len, struct proxy_header *out)
{
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < 3)
            return -1;
        unsigned type = p[pos];
        size_t l = (size_t)p[pos + 1] << 8 | p[pos + 2];
        if (l > len - pos - 3)
            return -1;
        const unsigned char *v = p + pos + 3;
        if (type == 0x01)
            keep_text(out->alpn, sizeof(out->alpn), v, l);
        else if (type == 0x02)
            keep_text(out->authority, sizeof(out->authority), v, l);
        else if (type == 0x20 && v2_ssl(v, l, out) != 0)
            return -1;
        pos += 3 + l;
    }
    return 0;
}

static void
v2_set(struct sockaddr_storage *ss, socklen_t *len_out, int family, const unsigned char *addr,
       const unsigned char *port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        memcpy(&a->sin_addr, addr, 4);
        memcpy(&a->sin_port, port, 2);
        *len_out = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_addr, addr, 16);
        memcpy(&a->sin6_port, port, 2);
        *len_out = sizeof(*a);
    }
}

static enum proxy_parse_result
parse_v2(const unsigned char *p, size_t n, struct proxy_header *out, size_t *used_out)
{
    if (n < 16)
        return PP_MORE;
    unsigned ver = p[12] >> 4, cmd = p[12] & 0x0f, fam = p[13];
    size_t len = (size_t)p[14] << 8 | p[15];
    if (ver != 2 || cmd > 1 || 16 + len > PROXY_PARSE_V2_MAX)
        return PP_BAD;
    if (n < 16 + len)
        return PP_MORE;
    out->version = PROXY_VERSION_V2;
    *used_out = 16 + len;
    const unsigned char *body = p + 16;
    size_t alen;
    switch (fam) {
    case 0x00: /* UNSPEC: the connection's own addresses */
        out->local = true;
        return PP_OK;
    case 0x11: /* TCP over IPv4 */
        alen = 12;
        if (len < alen)
            return PP_BAD;
        v2_set(&out->src, &out->src_len, AF_INET, body, body + 8);
        v2_set(&out->dst, &out->dst_len, AF_INET, body + 4, body + 10);
        break;
    case 0x21: /* TCP over IPv6 */
        alen = 36;
        if (len < alen)
            return PP_BAD;
        v2_set(&out->src, &out->src_len, AF_INET6, body, body + 32);
        v2_set(&out->dst, &out->dst_len, AF_INET6, body + 16, body + 34);
        break;
    default:
        return PP_BAD; /* UDP and UNIX sockets never front a mail listener */
    }
    if (v2_tlvs(body + alen, len - alen, out) != 0)
        return PP_BAD;
    if (cmd == 0) {
        out->local = true; /* LOCAL: addresses are informative only */
        out->src_len = out->dst_len = 0;
    }
    return PP_OK;
}

enum proxy_parse_result
proxy_parse(const unsigned char *p, size_t n, enum proxy_version accept, struct proxy_header *out,
            size_t *used_out)
{
    memset(out, 0, sizeof(*out));
    *used_out = 0;
    if (n == 0)
        return PP_MORE;
    bool v1 = accept != PROXY_VERSION_V2 && prefix_of(p, n, v1_sig, sizeof(v1_sig));
    bool v2 = accept != PROXY_VERSION_V1 && prefix_of(p, n, v2_sig, sizeof(v2_sig));
    if (v1 && n >= sizeof(v1_sig))
        return parse_v1(p, n, out, used_out);
    if (v2 && n >= sizeof(v2_sig))
        return parse_v2(p, n, out, used_out);
    return v1 || v2 ? PP_MORE : PP_BAD;
}
