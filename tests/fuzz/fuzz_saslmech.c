/*
 * fuzz_saslmech.c: SASL framing with arbitrary client lines: PLAIN/LOGIN parsed here, and the
 * lines of CRAM-MD5 / SCRAM only decoded (base64, "=", "*"). The first byte picks the mechanism;
 * the rest is split at LF into successive client lines.
 */
#include <string.h>

#include "saslmech.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0)
        return 0;
    struct sasl_exchange x = {0};
    sasl_exchange_start(&x, (enum sasl_mech)(1 + data[0] % (SASL_MECH_COUNT - 1)));
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    for (int steps = 0; steps < 8 && n > 0; steps++) {
        const char *lf = memchr(p, '\n', n);
        size_t len = lf ? (size_t)(lf - p) : n;
        const char *ch;
        enum sasl_step st = sasl_exchange_step(&x, p, len, &ch);
        if (st == SASL_STEP_DONE) {
            char out[4096];
            (void)sasl_plain_encode(&x.cred, out, sizeof(out));
        }
        if (st == SASL_STEP_SERVER && x.resp_len > SASL_RESP_MAX)
            __builtin_trap();
        if (st != SASL_STEP_CONTINUE && st != SASL_STEP_SERVER)
            break;
        p += lf ? len + 1 : len;
        n -= lf ? len + 1 : len;
    }
    sasl_exchange_wipe(&x);
    return 0;
}
