/*
 * confval.h: pure parsers for configuration values: durations ("30s", "5m", "250ms"), rates
 * ("100/1m"), sizes ("16k", "10M"), booleans, socket addresses ("127.0.0.1:25", "[::1]:993") and
 * CIDR lists. Input is a string, output a value or an error text; no I/O, no allocation except in
 * the CIDR list. Each has unit tests and is reached by the config fuzz target.
 */
#ifndef MOAT_CONFVAL_H
#define MOAT_CONFVAL_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "common.h"

struct rate {
    uint32_t count;     /* 0 = unlimited */
    uint32_t window_ms; /* > 0 when count > 0 */
};

struct cidr {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t prefix; /* bits */
    uint8_t addr[16];
};

struct cidr_list {
    struct cidr *items;
    size_t n;
};

/* Each returns 0 on success or -1 with *err_out set to an error text ("unknown unit 'x'"). The text
 * is static or lives in a per-thread buffer that stays valid until the next confval call in the
 * same thread; copy it before calling again. */
int confval_duration_ms(const char *s, uint32_t *out, const char **err_out);
int confval_rate(const char *s, struct rate *out, const char **err_out);
int confval_size(const char *s, size_t *out, const char **err_out);
int confval_bool(const char *s, bool *out, const char **err_out);
int confval_uint(const char *s, uint32_t max, uint32_t *out, const char **err_out);
/* "host:port" with a numeric IPv4 host, "[v6]:port", or "*:port" (all IPv4 addresses). */
int confval_addr(const char *s, struct sockaddr_storage *out, socklen_t *len_out,
                 const char **err_out);
int confval_cidr(const char *s, struct cidr *out, const char **err_out);
/* Append one CIDR. Config splits a space/comma separated list itself and reads "file:PATH"
 * entries through cidr_list_add_file. Returns 0 (allocation cannot fail). */
int cidr_list_add(struct cidr_list *l, const struct cidr *c);
/* A file holds one CIDR per line; '#' starts a comment; blank lines are skipped. It must be a
 * regular file. On error *line_out is the line of the bad entry (0 when the file cannot be read).
 */
int cidr_list_add_file(struct cidr_list *l, const char *path, const char **err_out, int *line_out);
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);
void cidr_list_free(struct cidr_list *l);
/* dst is overwritten (not freed first): give it an empty or freed list. */
void cidr_list_copy(struct cidr_list *dst, const struct cidr_list *src);

/* "192.0.2.1:25" or "[2001:db8::1]:993" into buf (INET6_ADDRSTRLEN + 8 bytes are enough);
 * returns buf. Any other family prints "?". */
#define CONFVAL_ADDR_STRLEN 56
const char *confval_addr_format(const struct sockaddr *sa, char *buf, size_t size);

#endif
