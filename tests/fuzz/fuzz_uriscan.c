/*
 * fuzz_uriscan.c: the URL host scanner (uriscan.h) with arbitrary messages. Byte 0 sets the caps
 * (bits 0-1 depth, 2-4 parts, 5-7 a byte cap); the rest is the message, scanned twice: in one
 * piece and in pieces whose sizes come from the message itself. Both must report the same hosts,
 * and every host must be lower-case LDH (or '_') with dots, at most 253 bytes.
 */
#include <stdint.h>
#include <string.h>

#include "uriscan.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

struct seen {
    uint64_t hash;
    uint32_t count;
};

static void
on_found(void *arg, const char *host, size_t n)
{
    struct seen *s = arg;
    MOAT_ASSERT(n > 0 && n <= URISCAN_HOST_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = host[i];
        MOAT_ASSERT((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                    c == '_');
    }
    MOAT_ASSERT(host[0] != '.' && host[n - 1] != '.');
    for (size_t i = 0; i < n; i++)
        s->hash = (s->hash ^ (unsigned char)host[i]) * 1099511628211ull;
    s->hash = (s->hash ^ 0xff) * 1099511628211ull;
    s->count++;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0)
        return 0;
    struct uriscan_limits lim = {
        .max_depth = 1 + (data[0] & 3) * 3,
        .max_parts = 1 + ((data[0] >> 2) & 7) * 4,
        .max_bytes = (data[0] >> 5) == 0 ? 1u << 20 : (uint64_t)(data[0] >> 5) * 97,
    };
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    static struct uriscan u;
    struct seen whole = {14695981039346656037ull, 0}, pieces = whole;
    uriscan_init(&u, &lim, on_found, &whole);
    uriscan_feed(&u, p, n);
    uriscan_finish(&u);
    enum uriscan_cap cap = u.capped;
    uriscan_init(&u, &lim, on_found, &pieces);
    for (size_t i = 0; i < n;) {
        size_t k = MOAT_MIN(n - i, (size_t)((unsigned char)p[i] % 61) + 1);
        uriscan_feed(&u, p + i, k);
        i += k;
    }
    uriscan_finish(&u);
    MOAT_ASSERT(whole.count == pieces.count && whole.hash == pieces.hash);
    MOAT_ASSERT(cap == u.capped);
    MOAT_ASSERT(u.bytes <= lim.max_bytes);
    return 0;
}
