/*
 * dnsname.c: DNS name validation, reverse names and HELO classification (see dnsname.h). Pure:
 * no resolver, no allocation. A PTR answer such as "evil.example\r\nXCLIENT" fails here, so it
 * can never reach a backend, a header or a log line unescaped.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dnsname.h"

static bool
is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool
name_valid(const char *p, size_t n, bool underscore)
{
    if (n > 0 && p[n - 1] == '.')
        n--;
    if (n == 0 || n > DNSNAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = i < n ? (unsigned char)p[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || p[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = is_alnum(c) || (c == '-' && label > 0) || (underscore && c == '_');
        if (!ok)
            return false;
        label++;
    }
    return true;
}

bool
dnsname_host_valid(const char *p, size_t n)
{
    return name_valid(p, n, false);
}

bool
dnsname_domain_valid(const char *p, size_t n)
{
    return name_valid(p, n, true);
}

bool
dnsname_equal(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 0 && a[na - 1] == '.')
        na--;
    if (nb > 0 && b[nb - 1] == '.')
        nb--;
    return na == nb && strncasecmp(a, b, na) == 0;
}

int
dnsname_reverse(const struct dns_addr *addr, const char *suffix, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    char tmp[80];
    if (addr->family == AF_INET) {
        int n = snprintf(tmp, sizeof(tmp), "%u.%u.%u.%u", addr->b[3], addr->b[2], addr->b[1],
                         addr->b[0]);
        k = (size_t)n;
    } else if (addr->family == AF_INET6) {
        for (int i = 15; i >= 0; i--) {
            tmp[k++] = hex[addr->b[i] & 15];
            tmp[k++] = '.';
            tmp[k++] = hex[addr->b[i] >> 4];
            tmp[k++] = i > 0 ? '.' : '\0';
        }
        k--;
    } else {
        return -1;
    }
    if (suffix == NULL)
        suffix = addr->family == AF_INET ? "in-addr.arpa" : "ip6.arpa";
    int n = snprintf(out, cap, "%.*s.%s", (int)k, tmp, suffix);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int
dns_addr_from_sockaddr(const struct sockaddr *sa, struct dns_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
        out->family = AF_INET;
        memcpy(out->b, &a->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            out->family = AF_INET;
            memcpy(out->b, &a->sin6_addr.s6_addr[12], 4);
        } else {
            out->family = AF_INET6;
            memcpy(out->b, &a->sin6_addr, 16);
        }
        return 0;
    }
    return -1;
}

int
dns_addr_parse(const char *text, struct dns_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, text, out->b) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, out->b) == 1) {
        out->family = AF_INET6;
        return 0;
    }
    return -1;
}

bool
dns_addr_equal(const struct dns_addr *a, const struct dns_addr *b)
{
    size_t len = a->family == AF_INET ? 4 : 16;
    return a->family == b->family && memcmp(a->b, b->b, len) == 0;
}

bool
dns_addr_prefix_match(const struct dns_addr *a, const struct dns_addr *b, unsigned bits)
{
    unsigned max = a->family == AF_INET ? 32 : 128;
    if (a->family != b->family || bits > max)
        return false;
    size_t whole = bits / 8;
    if (memcmp(a->b, b->b, whole) != 0)
        return false;
    unsigned rest = bits % 8;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a->b[whole] & mask) == (b->b[whole] & mask);
}

static enum helo_kind
helo_literal(const char *p, size_t n, struct dns_addr *addr_out)
{
    char text[64];
    if (n < 3 || p[n - 1] != ']' || n - 2 >= sizeof(text))
        return HELO_INVALID;
    memcpy(text, p + 1, n - 2);
    text[n - 2] = '\0';
    const char *a = text;
    bool v6 = strncasecmp(text, "IPv6:", 5) == 0;
    if (v6)
        a += 5;
    if (dns_addr_parse(a, addr_out) != 0 || (addr_out->family == AF_INET6) != v6)
        return HELO_INVALID;
    return HELO_LITERAL;
}

enum helo_kind
dnsname_helo_classify(const char *p, size_t n, struct dns_addr *addr_out)
{
    memset(addr_out, 0, sizeof(*addr_out));
    if (n > 0 && p[0] == '[')
        return helo_literal(p, n, addr_out);
    if (!dnsname_host_valid(p, n))
        return HELO_INVALID;
    size_t m = n > 0 && p[n - 1] == '.' ? n - 1 : n;
    if (memchr(p, '.', m) == NULL)
        return HELO_BARE_NAME;
    /* an all-numeric last label is an address written without brackets */
    const char *dot = p + m;
    while (dot > p && dot[-1] != '.')
        dot--;
    bool numeric = true;
    for (const char *q = dot; q < p + m; q++)
        numeric = numeric && *q >= '0' && *q <= '9';
    return numeric ? HELO_INVALID : HELO_NAME;
}
