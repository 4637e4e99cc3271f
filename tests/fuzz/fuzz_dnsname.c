/*
 * fuzz_dnsname.c: DNS name validation, HELO classification and the DNSBL list parser with
 * arbitrary bytes; a name that passes validation must contain no byte outside LDH and dots.
 */
#include <stdlib.h>
#include <string.h>

#include "dnsbl.h"
#include "dnsname.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *p = (const char *)data;
    if (dnsname_host_valid(p, size)) {
        for (size_t i = 0; i < size; i++) {
            char c = p[i];
            MOAT_ASSERT((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '.');
        }
    }
    (void)dnsname_domain_valid(p, size);
    struct dns_addr a;
    (void)dnsname_helo_classify(p, size, &a);
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    struct dnsbl_list *l = malloc(sizeof(*l));
    const char *err;
    (void)dnsbl_parse(s, l, &err);
    if (dns_addr_parse(s, &a) == 0) {
        char out[128];
        MOAT_ASSERT(dnsname_reverse(&a, "bl.test", out, sizeof(out)) > 0);
    }
    free(l);
    free(s);
    return 0;
}
