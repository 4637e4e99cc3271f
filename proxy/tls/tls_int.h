/*
 * tls_int.h: what the TLS files share: a context's certificate pairs and policy. tls_ctx.c
 * (library, contexts, certificates, tickets, groups) builds them; tls.c (connections) reads
 * them for the SNI choice and the group check. Nothing outside proxy/tls includes it.
 */
#ifndef MOAT_TLS_INT_H
#define MOAT_TLS_INT_H

#include <stdatomic.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "config.h"
#include "tls.h"

#define TLS_MAX_NAMES 16

/* A certificate pair beyond the first, chosen on the connection when SNI names it. */
struct tls_cert {
    unsigned char *cert_pem;
    long cert_len;
    unsigned char *key_pem;
    long key_len;
    char *names[TLS_MAX_NAMES];
    size_t nnames;
    time_t not_after; /* the leaf's validity end; 0 when it could not be read */
};

struct tls_ctx {
    atomic_int refs;
    WOLFSSL_CTX *ctx; /* holds the policy and the first (default) certificate */
    struct tls_cert certs[CONFIG_MAX_CERTS];
    size_t ncerts;
    const char *group_names[8]; /* wolfSSL_get_curve_name() spelling of each configured group */
    size_t ngroups;
    unsigned short ecdhe_size; /* octets of the first configured NIST curve, or 0 */
    bool sni_strict, sni_required;
};

/* SNI: the certificate pair that names the requested host, or -1 if none does. */
int tls_cert_for_name(const struct tls_ctx *tc, const char *name, size_t len);

#endif
