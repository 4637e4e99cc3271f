/*
 * tls_ctx.c: the per-process and per-generation half of the wolfSSL wrapper: library init and
 * what the build compiled in, certificate files and the names they answer to (SNI matching),
 * the process-wide session ticket keys, groups, resumption, and tls_ctx itself: the policy of
 * one config generation (minimum TLS 1.2, an explicit AEAD cipher list: the library defaults
 * accept RC4, 3DES, TLS 1.1 and an unencrypted TLS 1.3 suite). Native API only, like tls.c.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>

#include "der.h"
#include "tls_int.h"

void
tls_library_init(void)
{
    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        fatal("wolfSSL_Init failed");
}

void
tls_library_cleanup(void)
{
    wolfSSL_Cleanup();
}

void
tls_thread_cleanup(void)
{
#ifdef FP_ECC
    wc_ecc_fp_free();
#endif
}

#ifndef MOAT_WOLFSSL_ORIGIN
#define MOAT_WOLFSSL_ORIGIN "system library"
#endif

/* What the wolfSSL in this binary was built with: its options.h is the library's own, so these
 * macros say what the library compiled in. */
static const char *const tls_features[] = {
#ifdef WOLFSSL_AESNI
    "AES-NI",
#endif
#ifdef USE_INTEL_SPEEDUP
    "intel-asm(AVX1/AVX2)",
#endif
#ifdef WOLFSSL_ARMASM
    "ARMv8-crypto",
#endif
#ifdef WOLFSSL_SP_ASM
    "SP-asm",
#endif
#ifdef WOLFSSL_HAVE_SP_ECC
    "SP-ECC",
#endif
#ifdef WOLFSSL_HAVE_SP_RSA
    "SP-RSA",
#endif
#ifdef WOLFSSL_TLS13
    "TLS1.3",
#endif
#ifndef WOLFSSL_NO_TLS12
    "TLS1.2",
#endif
#ifdef HAVE_CURVE25519
    "X25519",
#endif
#ifdef HAVE_AESGCM
    "AES-GCM",
#endif
#if defined(HAVE_CHACHA) && defined(HAVE_POLY1305)
    "ChaCha20-Poly1305",
#endif
#ifdef HAVE_SNI
    "SNI",
#endif
#ifdef HAVE_ALPN
    "ALPN",
#endif
#ifdef HAVE_SESSION_TICKET
    "session-tickets",
#endif
#ifdef WOLFSSL_GETRANDOM
    "getrandom",
#endif
    NULL};

/* Compiled in, unused by moat: the tuned build has none of these. */
static const char *const tls_extras[] = {
#ifndef NO_OLD_TLS
    "old-TLS",
#endif
#ifdef OPENSSL_EXTRA
    "OpenSSL-compat",
#endif
#ifdef WOLFSSL_EARLY_DATA
    "early-data",
#endif
#ifdef SESSION_CERTS
    "session-certs",
#endif
#ifdef FP_ECC
    "FP_ECC",
#endif
    NULL};

static void
print_words(FILE *f, const char *label, const char *const *words)
{
    fputs(label, f);
    if (words[0] == NULL)
        fputs(" none", f);
    for (size_t i = 0; words[i] != NULL; i++)
        fprintf(f, " %s", words[i]);
    fputc('\n', f);
}

void
tls_library_describe(FILE *f)
{
    fprintf(f, "wolfSSL %s (%s)\n", wolfSSL_lib_version(), MOAT_WOLFSSL_ORIGIN);
    print_words(f, "wolfSSL features:", tls_features);
    print_words(f, "wolfSSL extras:", tls_extras);
}

static unsigned char *
read_file(const char *path, long *len_out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 65536, n = 0;
    unsigned char *p = xcalloc(1, cap + 1);
    size_t r;
    while ((r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            p = xrealloc(p, cap + 1);
        }
    }
    fclose(f);
    *len_out = (long)n;
    return p;
}

/* Names a certificate answers to: its DNS subjectAltNames, else its subject CN; and when it
 * expires. */
static void
cert_collect_names(struct tls_cert *c)
{
    int der_cap = (int)c->cert_len + 16;
    unsigned char *der = xcalloc(1, (size_t)der_cap);
    int der_len = wc_CertPemToDer(c->cert_pem, (int)c->cert_len, der, der_cap, CERT_TYPE);
    if (der_len <= 0) {
        free(der);
        return;
    }
    c->not_after = der_cert_not_after(der, (size_t)der_len);
    struct DecodedCert dc;
    wc_InitDecodedCert(&dc, der, (word32)der_len, NULL);
    if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) == 0) {
        for (DNS_entry *e = dc.altNames; e != NULL && c->nnames < TLS_MAX_NAMES; e = e->next) {
            if (e->type == ASN_DNS_TYPE && e->name != NULL)
                c->names[c->nnames++] = xstrdup(e->name);
        }
        if (c->nnames == 0 && dc.subjectCN != NULL && dc.subjectCNLen > 0) {
            char *cn = xcalloc(1, (size_t)dc.subjectCNLen + 1);
            memcpy(cn, dc.subjectCN, (size_t)dc.subjectCNLen);
            c->names[c->nnames++] = cn;
        }
    }
    wc_FreeDecodedCert(&dc);
    free(der);
}

static bool
name_matches(const char *pattern, const char *name, size_t name_len)
{
    size_t plen = strlen(pattern);
    if (plen == name_len && strncasecmp(pattern, name, name_len) == 0)
        return true;
    if (plen > 2 && pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = memchr(name, '.', name_len);
        if (dot == NULL)
            return false;
        size_t rest = name_len - (size_t)(dot - name);
        return rest == plen - 1 && strncasecmp(pattern + 1, dot, rest) == 0;
    }
    return false;
}

/* SNI: the certificate pair that names the requested host, or -1 if none does. */
int
tls_cert_for_name(const struct tls_ctx *tc, const char *name, size_t len)
{
    for (size_t i = 0; i < tc->ncerts; i++) {
        const struct tls_cert *c = &tc->certs[i];
        for (size_t j = 0; j < c->nnames; j++) {
            if (name_matches(c->names[j], name, len))
                return (int)i;
        }
    }
    return -1;
}

/* --- session tickets: one key ring for the process, shared by every generation --- */

#define TICKET_KEY_LIFETIME_S 3600

struct ticket_key {
    unsigned char name[WOLFSSL_TICKET_NAME_SZ];
    unsigned char key[CHACHA20_POLY1305_AEAD_KEYSIZE];
    time_t born;
};

static struct {
    pthread_mutex_t lock;
    WC_RNG rng;
    bool ready;
    struct ticket_key current, previous; /* previous: decrypt only, for one more lifetime */
} tickets = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Under tickets.lock. Returns -1 if the RNG fails (no ticket is issued then). */
static int
ticket_keys_fresh(time_t now)
{
    if (!tickets.ready) {
        if (wc_InitRng(&tickets.rng) != 0)
            return -1;
        tickets.ready = true;
    }
    if (tickets.current.born != 0 && now - tickets.current.born < TICKET_KEY_LIFETIME_S)
        return 0;
    struct ticket_key k = {.born = now};
    if (wc_RNG_GenerateBlock(&tickets.rng, k.name, sizeof(k.name)) != 0 ||
        wc_RNG_GenerateBlock(&tickets.rng, k.key, sizeof(k.key)) != 0)
        return -1;
    tickets.previous = tickets.current;
    tickets.current = k;
    explicit_bzero(&k, sizeof(k));
    return 0;
}

/* wolfSSL's SessionTicketEncCb: ChaCha20-Poly1305 over the ticket in place; the AAD is the key
 * name and IV, the tag goes in the first bytes of mac. */
static int
on_ticket(WOLFSSL *ssl, unsigned char name[WOLFSSL_TICKET_NAME_SZ],
          unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc,
          unsigned char *ticket, int in_len, int *out_len, void *arg)
{
    unsigned char aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ];
    struct ticket_key key;
    int ret = WOLFSSL_TICKET_RET_REJECT;
    pthread_mutex_lock(&tickets.lock);
    time_t now = time(NULL);
    if (ticket_keys_fresh(now) != 0) {
        pthread_mutex_unlock(&tickets.lock);
        return enc ? WOLFSSL_TICKET_RET_FATAL : WOLFSSL_TICKET_RET_REJECT;
    }
    if (enc) {
        key = tickets.current;
        ret = wc_RNG_GenerateBlock(&tickets.rng, iv, WOLFSSL_TICKET_IV_SZ) == 0
                  ? WOLFSSL_TICKET_RET_OK
                  : WOLFSSL_TICKET_RET_FATAL;
        memcpy(name, key.name, sizeof(key.name));
    } else if (memcmp(name, tickets.current.name, WOLFSSL_TICKET_NAME_SZ) == 0) {
        key = tickets.current;
        ret = WOLFSSL_TICKET_RET_OK;
    } else if (tickets.previous.born != 0 &&
               now - tickets.previous.born < 2 * TICKET_KEY_LIFETIME_S &&
               memcmp(name, tickets.previous.name, WOLFSSL_TICKET_NAME_SZ) == 0) {
        key = tickets.previous;
        ret = WOLFSSL_TICKET_RET_CREATE; /* good, but issue one under the current key */
    }
    pthread_mutex_unlock(&tickets.lock);
    if (ret != WOLFSSL_TICKET_RET_OK && ret != WOLFSSL_TICKET_RET_CREATE)
        return ret;
    memcpy(aad, name, WOLFSSL_TICKET_NAME_SZ);
    memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
    int rc = enc ? wc_ChaCha20Poly1305_Encrypt(key.key, iv, aad, sizeof(aad), ticket,
                                               (word32)in_len, ticket, mac)
                 : wc_ChaCha20Poly1305_Decrypt(key.key, iv, aad, sizeof(aad), ticket,
                                               (word32)in_len, mac, ticket);
    explicit_bzero(&key, sizeof(key));
    if (rc != 0)
        return enc ? WOLFSSL_TICKET_RET_FATAL : WOLFSSL_TICKET_RET_REJECT;
    *out_len = in_len;
    return ret;
}

/* --- DANE --- */

int
tls_spki_sha256(const char *cert_file, unsigned char out[32], const char **err_out)
{
    long pem_len = 0;
    unsigned char *pem = read_file(cert_file, &pem_len);
    if (pem == NULL) {
        *err_out = "cannot read certificate";
        return -1;
    }
    int der_cap = (int)pem_len + 16;
    unsigned char *der = xcalloc(1, (size_t)der_cap);
    int der_len = wc_CertPemToDer(pem, (int)pem_len, der, der_cap, CERT_TYPE);
    free(pem);
    const unsigned char *spki = NULL;
    size_t spki_len = 0;
    int rc = -1;
    *err_out = "not a PEM certificate";
    if (der_len > 0 && der_cert_spki(der, (size_t)der_len, &spki, &spki_len) == 0 &&
        wc_Sha256Hash(spki, (word32)spki_len, out) == 0)
        rc = 0;
    free(der);
    return rc;
}

/* The groups moat knows: config spelling, TLS id, wolfSSL_get_curve_name()'s spelling, and the
 * size in octets of a NIST curve (what wolfSSL's TLS 1.2 curve choice goes by). */
static const struct {
    const char *name;
    int id;
    const char *curve_name;
    unsigned short octets;
} known_groups[] = {
    {"X25519", WOLFSSL_ECC_X25519, "X25519", 0},
    {"X448", WOLFSSL_ECC_X448, "X448", 0},
    {"P-256", WOLFSSL_ECC_SECP256R1, "SECP256R1", 32},
    {"P-384", WOLFSSL_ECC_SECP384R1, "SECP384R1", 48},
    {"P-521", WOLFSSL_ECC_SECP521R1, "SECP521R1", 66},
    {"secp256r1", WOLFSSL_ECC_SECP256R1, "SECP256R1", 32},
    {"secp384r1", WOLFSSL_ECC_SECP384R1, "SECP384R1", 48},
};

/* Parses "X25519:P-256" into known_groups indexes; -1 on an unknown name or too many. */
static int
parse_groups(const char *list, size_t *idx, size_t max)
{
    size_t n = 0;
    const char *p = list;
    while (*p != '\0') {
        size_t len = strcspn(p, ":, ");
        if (len > 0) {
            size_t k;
            for (k = 0; k < ARRAY_SIZE(known_groups); k++) {
                if (strlen(known_groups[k].name) == len &&
                    strncasecmp(known_groups[k].name, p, len) == 0)
                    break;
            }
            if (k == ARRAY_SIZE(known_groups) || n == max)
                return -1;
            idx[n++] = k;
        }
        p += len;
        if (*p != '\0')
            p++;
    }
    return (int)n;
}

/* Accept exactly the configured groups. wolfSSL_CTX_set_groups orders and limits TLS 1.3 key
 * exchange only; a TLS 1.2 server picks its ECDHE curve from the client's list, restricted only
 * by the compatibility layer's curve mask (set1_curves_list), and when nothing is left it falls
 * back to the NIST curve of the "temporary key size": that size is the first configured NIST
 * curve's (set in tls_ctx_new, after the key), so the fallback is a configured curve the client did
 * not offer and the client ends the handshake. What remains (a build without the compatibility
 * layer, or only X25519/X448 configured) is caught by tls_handshake's check of the negotiated
 * group. -1: an unknown name; -2: a group this wolfSSL build does not have (the default build
 * compiles in X25519, P-256 and P-384 only: scripts/wolfssl-build). */
static int
ctx_set_groups(struct tls_ctx *tc, const char *list)
{
    size_t idx[ARRAY_SIZE(tc->group_names)];
    int n = parse_groups(list, idx, ARRAY_SIZE(idx));
    if (n <= 0)
        return -1;
    int ids[ARRAY_SIZE(idx)];
    char names[128] = "";
    for (int i = 0; i < n; i++) {
        ids[i] = known_groups[idx[i]].id;
        tc->group_names[i] = known_groups[idx[i]].curve_name;
        if (tc->ecdhe_size == 0)
            tc->ecdhe_size = known_groups[idx[i]].octets;
        if (i > 0)
            strcat(names, ":");
        strcat(names, known_groups[idx[i]].name); /* 8 names of at most 9 bytes each */
    }
    tc->ngroups = (size_t)n;
    if (wolfSSL_CTX_set_groups(tc->ctx, ids, n) != WOLFSSL_SUCCESS)
        return -2; /* known, but not in this wolfSSL build */
#if defined(OPENSSL_EXTRA) && defined(HAVE_ECC)
    if (wolfSSL_CTX_set1_curves_list(tc->ctx, names) != WOLFSSL_SUCCESS)
        return -1;
#endif
    return 0;
}

/* Session resumption per [tls] ticket_lifetime: 0 turns tickets (TLS 1.2 and 1.3) and TLS 1.2
 * session-ID resumption off; otherwise the hint and the server's own ticket age limit are the
 * lifetime. Early data (0-RTT, replayable) is never accepted. */
static int
ctx_set_resumption(struct tls_ctx *tc, uint32_t lifetime_ms)
{
    unsigned secs = lifetime_ms / 1000;
#ifdef WOLFSSL_EARLY_DATA
    if (wolfSSL_CTX_set_max_early_data(tc->ctx, 0) != WOLFSSL_SUCCESS)
        return -1;
#endif
    if (secs == 0) {
#ifdef HAVE_SESSION_TICKET
        if (wolfSSL_CTX_NoTicketTLSv12(tc->ctx) != WOLFSSL_SUCCESS)
            return -1;
#ifdef WOLFSSL_TLS13
        if (wolfSSL_CTX_no_ticket_TLSv13(tc->ctx) != 0) /* 0, not WOLFSSL_SUCCESS */
            return -1;
#endif
#endif
#ifndef NO_SESSION_CACHE
        if (wolfSSL_CTX_set_session_cache_mode(tc->ctx, WOLFSSL_SESS_CACHE_OFF) != WOLFSSL_SUCCESS)
            return -1;
#endif
        return 0;
    }
    /* returns the previous timeout in this build (reference: a trap), and may reset the hint:
     * the hint is set after it */
    (void)wolfSSL_CTX_set_timeout(tc->ctx, secs);
#ifdef HAVE_SESSION_TICKET
    if (wolfSSL_CTX_set_TicketHint(tc->ctx, (int)secs) != WOLFSSL_SUCCESS)
        return -1;
    /* process-wide ticket keys: tickets survive a reload, and TLS 1.2 resumption works across
     * SNI certificates (reference §1.7) */
    if (wolfSSL_CTX_set_TicketEncCb(tc->ctx, on_ticket) != WOLFSSL_SUCCESS)
        return -1;
#endif
    return 0;
}

static int
ctx_load_certs(struct tls_ctx *tc, const struct config_tls *conf, const char **err_out,
               int *cert_index_out)
{
    for (size_t i = 0; i < conf->ncerts; i++) {
        struct tls_cert *c = &tc->certs[i];
        *cert_index_out = (int)i;
        c->cert_pem = read_file(conf->certs[i].cert_file, &c->cert_len);
        if (c->cert_pem == NULL) {
            *err_out = "cannot read certificate";
            return -1;
        }
        c->key_pem =
            conf->certs[i].key_file ? read_file(conf->certs[i].key_file, &c->key_len) : NULL;
        if (c->key_pem == NULL) {
            *err_out = "cannot read private key";
            return -1;
        }
        tc->ncerts++;
        cert_collect_names(c);
        /* Every pair is checked on a scratch CTX so a bad one is reported where it is named. */
        WOLFSSL_CTX *check = wolfSSL_CTX_new(wolfSSLv23_server_method());
        if (check == NULL) {
            *err_out = "out of memory";
            return -1;
        }
        int ok = wolfSSL_CTX_use_certificate_chain_buffer(check, c->cert_pem, c->cert_len);
        if (ok != WOLFSSL_SUCCESS) {
            wolfSSL_CTX_free(check);
            *err_out = "not a PEM certificate";
            return -1;
        }
        ok = wolfSSL_CTX_use_PrivateKey_buffer(check, c->key_pem, c->key_len, WOLFSSL_FILETYPE_PEM);
        if (ok != WOLFSSL_SUCCESS) {
            wolfSSL_CTX_free(check);
            *err_out = "not a PEM private key, or it does not match the certificate";
            return -1;
        }
        ok = wolfSSL_CTX_check_private_key(check);
        wolfSSL_CTX_free(check);
        if (ok != WOLFSSL_SUCCESS) {
            *err_out = "private key does not match the certificate";
            return -1;
        }
    }
    *cert_index_out = -1;
    return 0;
}

struct tls_ctx *
tls_ctx_new(const struct config_tls *conf, const char **err_out, int *cert_index_out)
{
    struct tls_ctx *tc = xcalloc(1, sizeof(*tc));
    atomic_init(&tc->refs, 1);
    *cert_index_out = -1;
    if (conf->ncerts == 0) {
        *err_out = "no certificate configured";
        goto fail;
    }
    if (ctx_load_certs(tc, conf, err_out, cert_index_out) != 0)
        goto fail;
    tc->ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (tc->ctx == NULL) {
        *err_out = "wolfSSL_CTX_new failed";
        goto fail;
    }
    if (wolfSSL_CTX_SetMinVersion(tc->ctx,
                                  conf->min_version == 13 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2) !=
        WOLFSSL_SUCCESS) {
        *err_out = "cannot set the minimum TLS version";
        goto fail;
    }
    if (wolfSSL_CTX_set_cipher_list(tc->ctx, conf->ciphers) != WOLFSSL_SUCCESS) {
        *err_out = "ciphers: no usable cipher suite in the list";
        goto fail;
    }
    int groups_rc = ctx_set_groups(tc, conf->groups);
    if (groups_rc != 0) {
        *err_out = groups_rc == -2
                       ? "groups: a group this wolfSSL build does not have (moat -V; the default "
                         "build has X25519, P-256, P-384)"
                       : "groups: unknown group (use X25519, X448, P-256, P-384, P-521)";
        goto fail;
    }
    if (wolfSSL_CTX_use_certificate_chain_buffer(tc->ctx, tc->certs[0].cert_pem,
                                                 tc->certs[0].cert_len) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_use_PrivateKey_buffer(tc->ctx, tc->certs[0].key_pem, tc->certs[0].key_len,
                                          WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        *cert_index_out = 0;
        *err_out = "cannot load certificate";
        goto fail;
    }
    /* after the key: loading an ECDSA key sets the size to the key's curve */
    if (tc->ecdhe_size != 0 &&
        wolfSSL_CTX_SetTmpEC_DHE_Sz(tc->ctx, tc->ecdhe_size) != WOLFSSL_SUCCESS) {
        *err_out = "groups: cannot set the TLS 1.2 curve size";
        goto fail;
    }
    wolfSSL_CTX_set_verify(tc->ctx, WOLFSSL_VERIFY_NONE, NULL);
    /* a handshake flight in one send, not one per message */
    (void)wolfSSL_CTX_set_group_messages(tc->ctx);
    if (ctx_set_resumption(tc, conf->ticket_lifetime_ms) != 0) {
        *err_out = "ticket_lifetime: cannot configure session resumption";
        goto fail;
    }
    tc->sni_strict = conf->sni_strict;
    tc->sni_required = conf->sni_required;
    return tc;
fail:
    tls_ctx_unref(tc);
    return NULL;
}

time_t
tls_ctx_cert_not_after(const struct tls_ctx *ctx, size_t i)
{
    return i < ctx->ncerts ? ctx->certs[i].not_after : 0;
}

struct tls_ctx *
tls_ctx_ref(struct tls_ctx *ctx)
{
    atomic_fetch_add(&ctx->refs, 1);
    return ctx;
}

void
tls_ctx_unref(struct tls_ctx *tc)
{
    if (tc == NULL || atomic_fetch_sub(&tc->refs, 1) != 1)
        return;
    if (tc->ctx != NULL)
        wolfSSL_CTX_free(tc->ctx);
    for (size_t i = 0; i < tc->ncerts; i++) {
        struct tls_cert *c = &tc->certs[i];
        if (c->key_pem != NULL)
            explicit_bzero(c->key_pem, (size_t)c->key_len);
        free(c->cert_pem);
        free(c->key_pem);
        for (size_t j = 0; j < c->nnames; j++)
            free(c->names[j]);
    }
    free(tc);
}
