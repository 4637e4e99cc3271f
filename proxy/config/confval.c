/*
 * confval.c: pure parsers for configuration values (durations, rates, sizes, booleans, numbers,
 * socket addresses, CIDRs) and the CIDR list used by [access]. Every parser takes any string,
 * never overflows, and answers with a value or an error text. Only cidr_list_add_file does I/O;
 * only the CIDR list allocates.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confval.h"

#define CIDR_FILE_LINE_MAX 256
#define CIDR_FILE_MAX_ENTRIES 1000000

/* Error texts that name part of the input live here, one buffer per thread. */
static _Thread_local char confval_errbuf[160];

/* Copy at most 16 bytes of s into dst, replacing anything unprintable with '?'. */
static void
confval_sanitize(char *dst, size_t size, const char *s)
{
    size_t i = 0;

    for (; s[i] != '\0' && i < 16 && i + 4 < size; i++)
        dst[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    if (s[i] != '\0' && i + 4 < size) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
}

static const char *
confval_err_unit(const char *unit)
{
    char clean[24];

    confval_sanitize(clean, sizeof(clean), unit);
    snprintf(confval_errbuf, sizeof(confval_errbuf), "unknown unit '%s'", clean);
    return confval_errbuf;
}

/* Read decimal digits at *sp into *out. A number that does not fit 64 bits reads as UINT64_MAX
 * and makes no caller's range, except size's, which checks for it. Returns how many were read. */
static size_t
confval_digits(const char **sp, uint64_t *out)
{
    const char *p = *sp;
    uint64_t v = 0;
    bool over = false;

    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (over || v > (UINT64_MAX - d) / 10)
            over = true;
        else
            v = v * 10 + d;
        p++;
    }
    if (over)
        v = UINT64_MAX;
    size_t n = (size_t)(p - *sp);
    *out = v;
    *sp = p;
    return n;
}

int
confval_duration_ms(const char *s, uint32_t *out, const char **err_out)
{
    static const struct {
        const char *name;
        uint32_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *p = s;
    uint64_t v;

    if (*s == '\0') {
        *err_out = "empty value";
        return -1;
    }
    if (confval_digits(&p, &v) == 0 && p == s) {
        *err_out = "expected a number with a unit (ms, s, m, h, d)";
        return -1;
    }
    if (*p == '\0') {
        if (v == 0) {
            *out = 0;
            return 0;
        }
        *err_out = "missing unit (ms, s, m, h, d)";
        return -1;
    }
    for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        if (v > UINT32_MAX / units[i].ms) {
            *err_out = "too large (at most 49d)";
            return -1;
        }
        *out = (uint32_t)v * units[i].ms;
        return 0;
    }
    *err_out = confval_err_unit(p);
    return -1;
}

int
confval_rate(const char *s, struct rate *out, const char **err_out)
{
    const char *p = s;
    uint64_t count;
    uint32_t window;

    if (strcmp(s, "0") == 0) {
        out->count = 0;
        out->window_ms = 0;
        return 0;
    }
    confval_digits(&p, &count);
    if (p == s || *p != '/') {
        *err_out = "expected COUNT/DURATION such as 100/1m, or 0 for unlimited";
        return -1;
    }
    if (count > UINT32_MAX) {
        *err_out = "count too large";
        return -1;
    }
    if (confval_duration_ms(p + 1, &window, err_out) != 0)
        return -1;
    if (count > 0 && window == 0) {
        *err_out = "window must not be 0";
        return -1;
    }
    out->count = (uint32_t)count;
    out->window_ms = count > 0 ? window : 0;
    return 0;
}

int
confval_size(const char *s, size_t *out, const char **err_out)
{
    const char *p = s;
    uint64_t v, mult;

    if (*s == '\0') {
        *err_out = "empty value";
        return -1;
    }
    confval_digits(&p, &v);
    if (p == s) {
        *err_out = "expected a number of bytes, optionally with k, m or g";
        return -1;
    }
    if (*p == '\0')
        mult = 1;
    else if (strcmp(p, "k") == 0 || strcmp(p, "K") == 0)
        mult = 1024;
    else if (strcmp(p, "m") == 0 || strcmp(p, "M") == 0)
        mult = 1024 * 1024;
    else if (strcmp(p, "g") == 0 || strcmp(p, "G") == 0)
        mult = 1024 * 1024 * 1024;
    else {
        *err_out = confval_err_unit(p);
        return -1;
    }
    if (v == UINT64_MAX || v > SIZE_MAX / mult) {
        *err_out = "too large";
        return -1;
    }
    *out = (size_t)(v * mult);
    return 0;
}

int
confval_bool(const char *s, bool *out, const char **err_out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    *err_out = "expected yes or no";
    return -1;
}

int
confval_uint(const char *s, uint32_t max, uint32_t *out, const char **err_out)
{
    const char *p = s;
    uint64_t v;

    if (*s == '\0') {
        *err_out = "empty value";
        return -1;
    }
    confval_digits(&p, &v);
    if (p == s || *p != '\0') {
        *err_out = "not a number";
        return -1;
    }
    if (v > max) {
        snprintf(confval_errbuf, sizeof(confval_errbuf), "must be at most %u", (unsigned)max);
        *err_out = confval_errbuf;
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* Copy [p, p+n) into buf as a string; -1 when it does not fit. */
static int
confval_copy(char *buf, size_t size, const char *p, size_t n)
{
    if (n >= size)
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 0;
}

static int
confval_port(const char *s, uint16_t *port_out, const char **err_out)
{
    uint32_t port;

    if (*s == '\0') {
        *err_out = "missing port";
        return -1;
    }
    if (confval_uint(s, 65535, &port, err_out) != 0 || port == 0) {
        *err_out = "port must be a number from 1 to 65535";
        return -1;
    }
    *port_out = (uint16_t)port;
    return 0;
}

int
confval_addr(const char *s, struct sockaddr_storage *out, socklen_t *len_out, const char **err_out)
{
    char host[64];
    const char *port_str;
    uint16_t port;

    memset(out, 0, sizeof(*out));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        if (end == NULL) {
            *err_out = "missing ']' after IPv6 address";
            return -1;
        }
        if (end[1] != ':') {
            *err_out = "missing port";
            return -1;
        }
        port_str = end + 2;
        if (confval_copy(host, sizeof(host), s + 1, (size_t)(end - s - 1)) != 0 ||
            inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            *err_out = "not a numeric IPv6 address";
            return -1;
        }
        if (confval_port(port_str, &port, err_out) != 0)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len_out = sizeof(*sin6);
        return 0;
    }
    const char *colon = strrchr(s, ':');
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    if (colon == NULL) {
        *err_out = "missing port (host:port)";
        return -1;
    }
    if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
        *err_out = "an IPv6 address needs brackets: [::1]:25";
        return -1;
    }
    if (confval_copy(host, sizeof(host), s, (size_t)(colon - s)) != 0) {
        *err_out = "not a numeric address";
        return -1;
    }
    if (strcmp(host, "*") == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        *err_out = "not a numeric address";
        return -1;
    }
    if (confval_port(colon + 1, &port, err_out) != 0)
        return -1;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    *len_out = sizeof(*sin);
    return 0;
}

/* Whether any bit at or after position prefix is set in addr. */
static bool
cidr_host_bits(const uint8_t *addr, unsigned prefix, unsigned bits)
{
    for (unsigned i = prefix; i < bits; i++) {
        if (addr[i / 8] & (0x80u >> (i % 8)))
            return true;
    }
    return false;
}

int
confval_cidr(const char *s, struct cidr *out, const char **err_out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t host_len = slash ? (size_t)(slash - s) : strlen(s);
    unsigned bits;

    memset(out, 0, sizeof(*out));
    if (confval_copy(host, sizeof(host), s, host_len) != 0) {
        *err_out = "not a numeric address";
        return -1;
    }
    if (strchr(host, ':') != NULL) {
        out->family = AF_INET6;
        bits = 128;
    } else {
        out->family = AF_INET;
        bits = 32;
    }
    if (inet_pton(out->family, host, out->addr) != 1) {
        *err_out = "not a numeric address";
        return -1;
    }
    out->prefix = (uint8_t)bits;
    if (slash != NULL) {
        uint32_t prefix;
        if (confval_uint(slash + 1, bits, &prefix, err_out) != 0) {
            *err_out =
                bits == 32 ? "prefix length must be 0 to 32" : "prefix length must be 0 to 128";
            return -1;
        }
        out->prefix = (uint8_t)prefix;
    }
    if (cidr_host_bits(out->addr, out->prefix, bits)) {
        snprintf(confval_errbuf, sizeof(confval_errbuf),
                 "address has bits set beyond the /%u prefix", (unsigned)out->prefix);
        *err_out = confval_errbuf;
        return -1;
    }
    return 0;
}

/* Capacity implied by n: 8, then powers of two. */
static size_t
cidr_list_cap(size_t n)
{
    size_t cap = 8;

    while (cap < n)
        cap *= 2;
    return cap;
}

int
cidr_list_add(struct cidr_list *l, const struct cidr *c)
{
    if (l->n == 0 || (l->n >= 8 && (l->n & (l->n - 1)) == 0))
        l->items = xrealloc(l->items, cidr_list_cap(l->n + 1) * sizeof(*l->items));
    l->items[l->n++] = *c;
    return 0;
}

/* Trim a '#' comment and surrounding white space in place; returns the start. */
static char *
cidr_file_trim(char *line)
{
    char *hash = strchr(line, '#');
    size_t n;

    if (hash != NULL)
        *hash = '\0';
    while (isspace((unsigned char)*line))
        line++;
    n = strlen(line);
    while (n > 0 && isspace((unsigned char)line[n - 1]))
        line[--n] = '\0';
    return line;
}

/* Read one line of f into buf without its newline. Returns its length, -1 at end of file, -2 for
 * a line too long or holding a NUL byte (the rest of that line is consumed). */
static int
cidr_file_line(FILE *f, char *buf, size_t size)
{
    size_t n = 0;
    bool bad = false;
    int ch;

    while ((ch = getc(f)) != EOF && ch != '\n') {
        if (ch == '\0' || n + 1 >= size)
            bad = true;
        else
            buf[n++] = (char)ch;
    }
    buf[n] = '\0';
    if (ch == EOF && n == 0 && !bad)
        return -1;
    return bad ? -2 : (int)n;
}

static int
cidr_list_read(struct cidr_list *l, FILE *f, const char **err_out, int *line_out)
{
    char buf[CIDR_FILE_LINE_MAX];
    size_t added = 0;
    int len;

    while ((len = cidr_file_line(f, buf, sizeof(buf))) != -1) {
        struct cidr c;
        if (*line_out < INT32_MAX)
            (*line_out)++;
        if (len == -2) {
            *err_out = "line too long or holds a NUL byte";
            return -1;
        }
        char *entry = cidr_file_trim(buf);
        if (*entry == '\0')
            continue;
        if (confval_cidr(entry, &c, err_out) != 0)
            return -1;
        if (++added > CIDR_FILE_MAX_ENTRIES) {
            *err_out = "too many entries";
            return -1;
        }
        cidr_list_add(l, &c);
    }
    if (ferror(f)) {
        *err_out = "read error";
        return -1;
    }
    return 0;
}

int
cidr_list_add_file(struct cidr_list *l, const char *path, const char **err_out, int *line_out)
{
    struct stat st;
    FILE *f;
    int fd, rc;

    *line_out = 0;
    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        *err_out = strerror(errno);
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        *err_out = "not a regular file";
        return -1;
    }
    f = fdopen(fd, "r");
    if (f == NULL) {
        *err_out = strerror(errno);
        close(fd);
        return -1;
    }
    rc = cidr_list_read(l, f, err_out, line_out);
    fclose(f);
    return rc;
}

static bool
cidr_contains(const struct cidr *c, int family, const uint8_t *addr)
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;

    if (c->family != family)
        return false;
    if (memcmp(c->addr, addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

bool
cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
    const uint8_t *addr, *mapped = NULL;
    int family = sa->sa_family;

    if (family == AF_INET) {
        addr = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        addr = a6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6))
            mapped = addr + 12;
    } else {
        return false;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (cidr_contains(&l->items[i], family, addr))
            return true;
        if (mapped != NULL && cidr_contains(&l->items[i], AF_INET, mapped))
            return true;
    }
    return false;
}

void
cidr_list_free(struct cidr_list *l)
{
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void
cidr_list_copy(struct cidr_list *dst, const struct cidr_list *src)
{
    dst->items = NULL;
    dst->n = src->n;
    if (src->n == 0)
        return;
    dst->items = xcalloc(cidr_list_cap(src->n), sizeof(*dst->items));
    memcpy(dst->items, src->items, src->n * sizeof(*src->items));
}

const char *
confval_addr_format(const struct sockaddr *sa, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, size, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, size, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, size, "?");
    }
    return buf;
}
