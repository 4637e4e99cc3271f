/*
 * tls_crypto.c: the small wolfCrypt services other layers use, so that wolfSSL stays behind
 * proxy/tls: base64 (RFC 4648) for the SASL framing (strict decoding: whole groups, padding
 * only at the end, no other characters; encoding without line breaks; decoded bytes may be
 * secrets: the scratch copy is wiped) and HMAC-SHA-256 (the fake SCRAM salts).
 */
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "tls.h"

static bool
b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int
tls_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n == 0)
        return 0;
    if (n % 4 != 0 || n > UINT32_MAX / 2)
        return -1;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '=') {
            if (i < n - 2)
                return -1;
            pad++;
        } else if (pad > 0 || !b64_char(c)) {
            return -1;
        }
    }
    size_t need = n / 4 * 3 - pad;
    if (need > cap)
        return -1;
    /* wolfCrypt wants room for whole groups */
    size_t tmp_cap = n / 4 * 3 + 4;
    unsigned char *tmp = xcalloc(1, tmp_cap);
    word32 len = (word32)tmp_cap;
    int ret = Base64_Decode((const byte *)in, (word32)n, tmp, &len);
    bool ok = ret == 0 && len == need;
    if (ok)
        memcpy(out, tmp, len);
    explicit_bzero(tmp, tmp_cap);
    free(tmp);
    return ok ? (int)len : -1;
}

int
tls_base64_encode(const unsigned char *in, size_t n, char *out, size_t cap)
{
    if (n == 0) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    word32 len = (word32)cap;
    if ((n + 2) / 3 * 4 + 1 > cap || Base64_Encode_NoNl(in, (word32)n, (byte *)out, &len) != 0)
        return -1;
    if (len < cap)
        out[len] = '\0';
    return (int)len;
}

int
tls_hmac_sha256(const unsigned char *key, size_t key_len, const void *const *parts,
                const size_t *lens, size_t n, unsigned char out[TLS_HMAC_SHA256_BYTES])
{
    Hmac h;
    if (key_len > UINT32_MAX || wc_HmacInit(&h, NULL, INVALID_DEVID) != 0)
        return -1;
    int e = wc_HmacSetKey(&h, WC_SHA256, key, (word32)key_len);
    for (size_t i = 0; e == 0 && i < n; i++)
        e = lens[i] > UINT32_MAX ? -1 : wc_HmacUpdate(&h, parts[i], (word32)lens[i]);
    if (e == 0)
        e = wc_HmacFinal(&h, out);
    wc_HmacFree(&h);
    return e == 0 ? 0 : -1;
}
