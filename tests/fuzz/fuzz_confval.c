/*
 * fuzz_confval.c: libFuzzer target for the value parsers: the input (cut at its first NUL) goes
 * through every parser of confval.h, and each CIDR it yields is matched against an address made
 * from the input's bytes. Parsers must answer with a value or an error, never crash or overflow.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A CIDR always contains its own network address; other addresses come from the input. */
static void
fuzz_match(const struct cidr *c, const uint8_t *data, size_t size)
{
    struct cidr_list list = {NULL, 0}, copy;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    sin.sin_family = AF_INET;
    sin6.sin6_family = AF_INET6;
    cidr_list_add(&list, c);
    if (c->family == AF_INET) {
        memcpy(&sin.sin_addr, c->addr, 4);
        MOAT_ASSERT(cidr_list_match(&list, (struct sockaddr *)&sin));
    } else {
        memcpy(&sin6.sin6_addr, c->addr, 16);
        MOAT_ASSERT(cidr_list_match(&list, (struct sockaddr *)&sin6));
    }
    memcpy(&sin.sin_addr, data, MOAT_MIN(size, sizeof(sin.sin_addr)));
    memcpy(&sin6.sin6_addr, data, MOAT_MIN(size, sizeof(sin6.sin6_addr)));
    (void)cidr_list_match(&list, (struct sockaddr *)&sin);
    (void)cidr_list_match(&list, (struct sockaddr *)&sin6);
    cidr_list_copy(&copy, &list);
    cidr_list_add(&copy, c);
    MOAT_ASSERT(copy.n == 2);
    cidr_list_free(&copy);
    cidr_list_free(&list);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    const char *err;
    uint32_t u;
    size_t sz;
    bool b;
    struct rate r;
    struct sockaddr_storage ss;
    socklen_t len;
    struct cidr c;
    char shown[CONFVAL_ADDR_STRLEN];

    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (confval_duration_ms(s, &u, &err) != 0)
        MOAT_ASSERT(err != NULL && strlen(err) > 0);
    if (confval_rate(s, &r, &err) == 0)
        MOAT_ASSERT(r.count == 0 ? r.window_ms == 0 : r.window_ms > 0);
    (void)confval_size(s, &sz, &err);
    (void)confval_bool(s, &b, &err);
    (void)confval_uint(s, 1000, &u, &err);
    if (confval_uint(s, UINT32_MAX, &u, &err) == 0)
        MOAT_ASSERT(size > 0);
    if (confval_addr(s, &ss, &len, &err) == 0) {
        MOAT_ASSERT(len > 0 && len <= sizeof(ss));
        confval_addr_format((struct sockaddr *)&ss, shown, sizeof(shown));
        MOAT_ASSERT(strlen(shown) < sizeof(shown) - 1);
    }
    if (confval_cidr(s, &c, &err) == 0) {
        MOAT_ASSERT(c.prefix <= (c.family == AF_INET ? 32 : 128));
        fuzz_match(&c, data, size);
    }
    free(s);
    return 0;
}
