/*
 * fuzz_proxyparse.c: the PROXY header parser with arbitrary bytes, for every accepted version.
 * A header found must lie within the input and within the protocol's size bounds.
 */
#include "proxy_parse.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const enum proxy_version versions[] = {PROXY_VERSION_ANY, PROXY_VERSION_V1,
                                                  PROXY_VERSION_V2};
    for (size_t i = 0; i < ARRAY_SIZE(versions); i++) {
        struct proxy_header h;
        size_t used = 0;
        enum proxy_parse_result r = proxy_parse(data, size, versions[i], &h, &used);
        if (r != PP_OK)
            continue;
        MOAT_ASSERT(used > 0 && used <= size);
        MOAT_ASSERT(used <= (h.version == PROXY_VERSION_V1 ? 107u : PROXY_PARSE_V2_MAX));
        MOAT_ASSERT(h.local || h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6);
        MOAT_ASSERT(h.authority[sizeof(h.authority) - 1] == '\0');
    }
    return 0;
}
