/*
 * cluster_msg.c: format and parse the bans channel's messages (cluster_msg.h). Strict: one
 * kind letter, single spaces, lowercase hex keys whose length byte matches, decimal
 * milliseconds without a leading zero below 2^40; anything else is refused.
 */
#include <stdio.h>
#include <string.h>

#include "cluster_msg.h"

static const char digits[] = "0123456789abcdef";

void
cluster_key_hex(const struct ratetable_key *k, char out[CLUSTER_KEY_HEX])
{
    size_t n = 0, len = k->len < RATETABLE_KEY_MAX ? k->len : RATETABLE_KEY_MAX;
    out[n++] = digits[len >> 4];
    out[n++] = digits[len & 15];
    for (size_t i = 0; i < len; i++) {
        out[n++] = digits[k->bytes[i] >> 4];
        out[n++] = digits[k->bytes[i] & 15];
    }
    out[n] = '\0';
}

void
cluster_msg_format(const struct cluster_msg *m, char *out, size_t cap)
{
    char a[CLUSTER_KEY_HEX], b[CLUSTER_KEY_HEX];
    cluster_key_hex(&m->key, a);
    switch (m->kind) {
    case CMSG_CLIENT_BAN:
    case CMSG_USER_BAN:
        snprintf(out, cap, "%c %s %llu", m->kind == CMSG_CLIENT_BAN ? 'c' : 'u', a,
                 (unsigned long long)m->ban_ms);
        return;
    case CMSG_FAMILIAR:
        cluster_key_hex(&m->client, b);
        snprintf(out, cap, "f %s %s", a, b);
        return;
    }
}

static int
nibble(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* A hex key at *pp, up to a space or end (*pp is left on it); 0 or -1. */
static int
key_parse(const char **pp, const char *end, struct ratetable_key *k)
{
    const char *p = *pp;
    uint8_t raw[1 + RATETABLE_KEY_MAX];
    size_t n = 0;
    while (p < end && *p != ' ') {
        if (end - p < 2 || n == sizeof(raw))
            return -1;
        int hi = nibble(p[0]), lo = nibble(p[1]);
        if (hi < 0 || lo < 0)
            return -1;
        raw[n++] = (uint8_t)(hi << 4 | lo);
        p += 2;
    }
    if (n == 0 || raw[0] != n - 1)
        return -1;
    memset(k, 0, sizeof(*k));
    k->len = raw[0];
    memcpy(k->bytes, raw + 1, k->len);
    *pp = p;
    return 0;
}

int
cluster_msg_parse(const char *p, size_t len, struct cluster_msg *out)
{
    const char *end = p + len;
    memset(out, 0, sizeof(*out));
    if (len < 4 || p[1] != ' ')
        return -1;
    switch (p[0]) {
    case 'c':
        out->kind = CMSG_CLIENT_BAN;
        break;
    case 'u':
        out->kind = CMSG_USER_BAN;
        break;
    case 'f':
        out->kind = CMSG_FAMILIAR;
        break;
    default:
        return -1;
    }
    p += 2;
    if (key_parse(&p, end, &out->key) != 0 || p == end || *p != ' ')
        return -1;
    p++;
    if (out->kind == CMSG_FAMILIAR)
        return key_parse(&p, end, &out->client) == 0 && p == end ? 0 : -1;
    if (p == end || *p == '0') /* no leading zero: one text per message */
        return -1;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || out->ban_ms >= (1ull << 40))
            return -1;
        out->ban_ms = out->ban_ms * 10 + (uint64_t)(*p - '0');
    }
    return out->ban_ms > 0 ? 0 : -1;
}
