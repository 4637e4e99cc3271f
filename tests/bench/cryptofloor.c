/*
 * cryptofloor.c: moat_cryptofloor, the CPU cost of the public-key operations in one TLS 1.3
 * server handshake, done by the same wolfSSL moat links (its own static build, or the system
 * library with -DMOAT_SYSTEM_WOLFSSL=ON). tests/bench/tuning.py runs it next to the handshake
 * figures: what moat's handshake costs beyond these is moat's and the TLS record layer's.
 *
 *   moat_cryptofloor RSA_KEY.der ECDSA_KEY.der [SECONDS]
 *
 * Prints one line per operation, "name=<CPU microseconds per operation>", each timed by
 * CLOCK_PROCESS_CPUTIME_ID over SECONDS (default 2) of repetitions:
 *   rsa2048_pss_sign  the server's CertificateVerify with an RSA-2048 key (RSA-PSS, SHA-256)
 *   p256_sign         the same with an ECDSA P-256 key
 *   x25519            one key pair plus one shared secret (the server's key share)
 */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double
cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t
read_file(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void
fail(const char *what, int rc)
{
    fprintf(stderr, "moat_cryptofloor: %s: %d\n", what, rc);
    exit(1);
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: moat_cryptofloor RSA_KEY.der ECDSA_KEY.der [SECONDS]\n");
        return 2;
    }
    double secs = argc > 3 ? atof(argv[3]) : 2.0;
    if (secs <= 0 || secs > 60)
        secs = 2.0;
    static unsigned char der[8192], sig[512];
    unsigned char hash[32] = {1, 2, 3, 4};
    WC_RNG rng;
    int rc;
    if ((rc = wc_InitRng(&rng)) != 0)
        fail("wc_InitRng", rc);

    RsaKey rsa;
    word32 idx = 0;
    size_t n = read_file(argv[1], der, sizeof(der));
    wc_InitRsaKey(&rsa, NULL);
    wc_RsaSetRNG(&rsa, &rng);
    if ((rc = wc_RsaPrivateKeyDecode(der, &idx, &rsa, (word32)n)) != 0)
        fail("RSA key", rc);
    long ops = 0;
    double t0 = cpu_now(), t = 0;
    while ((t = cpu_now() - t0) < secs && ops < 1000000) {
        rc = wc_RsaPSS_Sign(hash, sizeof(hash), sig, sizeof(sig), WC_HASH_TYPE_SHA256,
                            WC_MGF1SHA256, &rsa, &rng);
        if (rc <= 0)
            fail("RSA-PSS sign", rc);
        ops++;
    }
    printf("rsa2048_pss_sign=%.1f\n", t / (double)ops * 1e6);
    wc_FreeRsaKey(&rsa);

    ecc_key ecc;
    idx = 0;
    n = read_file(argv[2], der, sizeof(der));
    wc_ecc_init(&ecc);
    if ((rc = wc_EccPrivateKeyDecode(der, &idx, &ecc, (word32)n)) != 0)
        fail("ECDSA key", rc);
    ops = 0;
    t0 = cpu_now();
    while ((t = cpu_now() - t0) < secs && ops < 1000000) {
        word32 len = sizeof(sig);
        if ((rc = wc_ecc_sign_hash(hash, sizeof(hash), sig, &len, &rng, &ecc)) != 0)
            fail("ECDSA sign", rc);
        ops++;
    }
    printf("p256_sign=%.1f\n", t / (double)ops * 1e6);
    wc_ecc_free(&ecc);

    curve25519_key peer, mine;
    wc_curve25519_init(&peer);
    if ((rc = wc_curve25519_make_key(&rng, CURVE25519_KEYSIZE, &peer)) != 0)
        fail("X25519 peer key", rc);
    ops = 0;
    t0 = cpu_now();
    while ((t = cpu_now() - t0) < secs && ops < 1000000) {
        unsigned char shared[CURVE25519_KEYSIZE];
        word32 len = sizeof(shared);
        wc_curve25519_init(&mine);
        if ((rc = wc_curve25519_make_key(&rng, CURVE25519_KEYSIZE, &mine)) != 0)
            fail("X25519 key", rc);
        if ((rc = wc_curve25519_shared_secret(&mine, &peer, shared, &len)) != 0)
            fail("X25519 shared secret", rc);
        wc_curve25519_free(&mine);
        ops++;
    }
    printf("x25519=%.1f\n", t / (double)ops * 1e6);
    wc_curve25519_free(&peer);
    wc_FreeRng(&rng);
    return 0;
}
