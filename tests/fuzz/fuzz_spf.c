/*
 * fuzz_spf.c: the SPF record parser with arbitrary records, then a whole evaluation where every
 * TXT answer is the fuzz input itself (so include/redirect/macros recurse into it) and every
 * address lookup answers 192.0.2.1.
 */
#include <stdlib.h>
#include <string.h>

#include "spf.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static char record[4096];

static enum spf_rcode
lookup(void *arg, enum spf_qtype t, const char *name, struct spf_rrset *out)
{
    static const char *strs[1] = {record};
    static const char *mx[2] = {"mx.fuzz.test", "."};
    static struct dns_addr addr;
    switch (t) {
    case SPF_Q_TXT:
        out->n = 1;
        out->strs = strs;
        return SPF_R_OK;
    case SPF_Q_MX:
        out->n = 2;
        out->strs = mx;
        return SPF_R_OK;
    case SPF_Q_A:
    case SPF_Q_AAAA:
        dns_addr_parse(t == SPF_Q_A ? "192.0.2.1" : "2001:db8::1", &addr);
        out->n = strlen(name) % 2;
        out->addrs = &addr;
        return out->n ? SPF_R_OK : SPF_R_NONE;
    }
    return SPF_R_TEMP;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct spf_record *r = xcalloc(1, sizeof(*r));
    const char *err;
    (void)spf_record_parse((const char *)data, size, r, &err);
    free(r);
    if (size >= sizeof(record) || memchr(data, '\0', size) != NULL)
        return 0;
    memcpy(record, data, size);
    record[size] = '\0';
    struct spf_resolver res = {lookup, NULL};
    struct spf_request q = {.sender = "user@fuzz.test", .domain = "fuzz.test", .helo = "h.test"};
    dns_addr_parse(size % 2 ? "192.0.2.1" : "2001:db8::7", &q.ip);
    struct spf_outcome o;
    (void)spf_check(&res, &q, &o);
    return 0;
}
