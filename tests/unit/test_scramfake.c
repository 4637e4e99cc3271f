/*
 * test_scramfake.c: the synthetic SCRAM server-first-message for unknown users: its shape (the
 * client nonce, then the server nonce, a salt of the hash's size, the iteration count), the same
 * salt for the same name and key, another for another name or key, the decoded user name, and
 * every malformed client-first refused.
 */
#include "scramfake.h"
#include "test.h"
#include "tls.h"

static const uint8_t key1[SCRAM_FAKE_KEY_LEN] = {1, 2, 3};
static const uint8_t key2[SCRAM_FAKE_KEY_LEN] = {9, 9, 9};
static const char *nonce = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef";

static int
fake(enum sasl_mech m, const char *in, const uint8_t *key, char *out, char *user)
{
    return scram_fake_first(m, (const unsigned char *)in, strlen(in), key, nonce, out, 256, user,
                            64);
}

/* The salt of out ("r=...,s=SALT,i=4096"), decoded: its length. */
static int
salt_len(const char *out, char *salt64)
{
    const char *s = strstr(out, ",s=");
    const char *e = s != NULL ? strstr(s + 3, ",i=") : NULL;
    if (e == NULL)
        return -1;
    memcpy(salt64, s + 3, (size_t)(e - s - 3));
    salt64[e - s - 3] = '\0';
    unsigned char raw[64];
    return tls_base64_decode(salt64, strlen(salt64), raw, sizeof(raw));
}

static void
test_shape(void)
{
    char out[256], user[64], s1[64], s2[64];
    int n =
        fake(SASL_MECH_SCRAM_SHA_256, "n,,n=nobody@example.test,r=clientnonce", key1, out, user);
    CHECK(n > 0 && (size_t)n == strlen(out));
    CHECK(strncmp(out, "r=clientnonceABCDEFGHIJKLMNOPQRSTUVWXYZabcdef,s=", 48) == 0);
    CHECK(strcmp(out + n - 7, ",i=4096") == 0);
    CHECK_STR(user, "nobody@example.test");
    CHECK(salt_len(out, s1) == 32);
    CHECK(fake(SASL_MECH_SCRAM_SHA_1, "n,,n=nobody@example.test,r=x", key1, out, user) > 0);
    CHECK(salt_len(out, s2) == 20);
    /* deterministic per name and key */
    fake(SASL_MECH_SCRAM_SHA_256, "y,,n=nobody@example.test,r=other,ext=1", key1, out, user);
    CHECK(salt_len(out, s2) == 32 && strcmp(s1, s2) == 0);
    CHECK(strncmp(out, "r=otherABCD", 11) == 0);
    fake(SASL_MECH_SCRAM_SHA_256, "n,,n=somebody@example.test,r=x", key1, out, user);
    CHECK(salt_len(out, s2) == 32 && strcmp(s1, s2) != 0);
    fake(SASL_MECH_SCRAM_SHA_256, "n,,n=nobody@example.test,r=x", key2, out, user);
    CHECK(salt_len(out, s2) == 32 && strcmp(s1, s2) != 0);
    /* an authzid, channel binding, escapes */
    CHECK(fake(SASL_MECH_SCRAM_SHA_256, "p=tls-unique,a=x,n=a=2Cb=3Dc,r=x", key1, out, user) > 0);
    CHECK_STR(user, "a,b=c");
}

static void
test_malformed(void)
{
    char out[256], user[64];
    const char *bad[] = {
        "",
        "n",
        "n,,",
        "x,,n=u,r=x",
        "n,,r=x,n=u",
        "n,,n=u",
        "n,,n=u,r=",
        "n,,n=,r=x",
        "n,b,n=u,r=x",
        "n,,n=a=2,r=x",
        "n,,n=a=ZZ,r=x",
        "p=tls,n=u,r=x",
        "nn,,n=u,r=x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fake(SASL_MECH_SCRAM_SHA_256, bad[i], key1, out, user) != -1)
            fprintf(stderr, "  accepted: '%s'\n", bad[i]);
        CHECK(fake(SASL_MECH_SCRAM_SHA_256, bad[i], key1, out, user) == -1);
    }
    CHECK(fake(SASL_MECH_CRAM_MD5, "n,,n=u,r=x", key1, out, user) == -1);
    CHECK(scram_fake_first(SASL_MECH_SCRAM_SHA_256, (const unsigned char *)"n,,n=u\0,r=x", 11, key1,
                           nonce, out, sizeof(out), user, sizeof(user)) == -1);
    /* no room: refused, never cut */
    CHECK(scram_fake_first(SASL_MECH_SCRAM_SHA_256, (const unsigned char *)"n,,n=u,r=x", 10, key1,
                           nonce, out, 40, user, sizeof(user)) == -1);
}

int
main(void)
{
    test_shape();
    test_malformed();
    return test_finish("test_scramfake");
}
