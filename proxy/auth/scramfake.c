/*
 * scramfake.c: the synthetic SCRAM server-first-message (see scramfake.h). The salt is
 * HMAC-SHA-256(key, mechanism NUL user name), cut to the mechanism's hash size.
 */
#include <stdio.h>
#include <string.h>

#include "scramfake.h"
#include "tls.h"

/* The value of "k=" at p (up to ',' or the end); NULL if p does not start with it. */
static const unsigned char *
attr(const unsigned char *p, const unsigned char *end, char k, size_t *len)
{
    if (end - p < 2 || p[0] != (unsigned char)k || p[1] != '=')
        return NULL;
    p += 2;
    const unsigned char *c = memchr(p, ',', (size_t)(end - p));
    *len = (size_t)((c != NULL ? c : end) - p);
    return p;
}

/* saslname (RFC 5802: "=2C" is ',', "=3D" is '='): -1 on a bad escape or a NUL. */
static int
decode_saslname(const unsigned char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = (char)p[i];
        if (c == '\0')
            return -1;
        if (c == '=') {
            if (n - i < 3)
                return -1;
            if (p[i + 1] == '2' && p[i + 2] == 'C')
                c = ',';
            else if (p[i + 1] == '3' && p[i + 2] == 'D')
                c = '=';
            else
                return -1;
            i += 2;
        }
        if (o + 1 < cap)
            out[o++] = c;
    }
    if (cap > 0)
        out[o] = '\0';
    return 0;
}

int
scram_fake_first(enum sasl_mech m, const unsigned char *in, size_t n,
                 const uint8_t key[SCRAM_FAKE_KEY_LEN], const char *nonce, char *out, size_t cap,
                 char *user, size_t user_cap)
{
    size_t hash_len;
    if (m == SASL_MECH_SCRAM_SHA_1)
        hash_len = 20;
    else if (m == SASL_MECH_SCRAM_SHA_256)
        hash_len = 32;
    else
        return -1;
    const unsigned char *p = in, *end = in + n, *c;
    /* gs2-header: ("n" / "y" / "p=" cb-name) "," [ "a=" saslname ] "," */
    if (n < 3 || memchr(in, '\0', n) != NULL)
        return -1;
    if (p[0] == 'p' && p[1] == '=') {
        if ((c = memchr(p, ',', n)) == NULL)
            return -1;
        p = c;
    } else if (p[0] == 'n' || p[0] == 'y') {
        p++;
    } else {
        return -1;
    }
    if (p >= end || *p++ != ',')
        return -1;
    if ((c = memchr(p, ',', (size_t)(end - p))) == NULL)
        return -1;
    if (c != p && !(c - p >= 2 && p[0] == 'a' && p[1] == '='))
        return -1;
    p = c + 1;
    size_t ulen, rlen;
    const unsigned char *u = attr(p, end, 'n', &ulen);
    if (u == NULL || ulen == 0 || u + ulen >= end)
        return -1;
    const unsigned char *r = attr(u + ulen + 1, end, 'r', &rlen);
    if (r == NULL || rlen == 0)
        return -1;
    if (decode_saslname(u, ulen, user, user_cap) != 0)
        return -1;

    unsigned char salt[TLS_HMAC_SHA256_BYTES];
    const char *mech = sasl_mech_name(m);
    const void *parts[] = {mech, user};
    const size_t lens[] = {strlen(mech) + 1, strlen(user)};
    if (tls_hmac_sha256(key, SCRAM_FAKE_KEY_LEN, parts, lens, 2, salt) != 0)
        return -1;
    char salt64[64];
    if (tls_base64_encode(salt, hash_len, salt64, sizeof(salt64)) < 0)
        return -1;
    int len = snprintf(out, cap, "r=%.*s%.*s,s=%s,i=%u", (int)rlen, (const char *)r,
                       SCRAM_FAKE_NONCE_LEN, nonce, salt64, SCRAM_FAKE_ITERATIONS);
    if (len < 0 || (size_t)len >= cap)
        return -1;
    return len;
}
