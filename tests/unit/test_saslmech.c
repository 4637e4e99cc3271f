/*
 * test_saslmech.c: SASL PLAIN/LOGIN framing and base64 (saslmech.h): "=" for empty, "*" to
 * cancel, authzid rules, bad base64 never continues, and the PLAIN replay encoding.
 */
#include <string.h>

#include "saslmech.h"
#include "test.h"

static void
test_plain(void)
{
    struct sasl_exchange x = {0};
    const char *ch;
    CHECK(sasl_mech_parse("plain", 5) == SASL_MECH_PLAIN);
    CHECK(sasl_mech_parse("LOGIN", 5) == SASL_MECH_LOGIN);
    CHECK(sasl_mech_parse("DIGEST-MD5", 10) == SASL_MECH_NONE);
    sasl_exchange_start(&x, SASL_MECH_PLAIN);
    /* \0alice@example.test\0secret */
    CHECK(sasl_exchange_step(&x, "AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", 36, &ch) ==
          SASL_STEP_DONE);
    CHECK_STR(x.cred.user, "alice@example.test");
    CHECK_STR(x.cred.pass, "secret");
    sasl_exchange_wipe(&x);
    CHECK(x.cred.pass[0] == '\0');
    /* authzid equal to the login is fine; another one is not */
    sasl_exchange_start(&x, SASL_MECH_PLAIN);
    CHECK(sasl_exchange_step(&x, "YQBhAHA=", 8, &ch) == SASL_STEP_DONE); /* a\0a\0p */
    sasl_exchange_start(&x, SASL_MECH_PLAIN);
    CHECK(sasl_exchange_step(&x, "YgBhAHA=", 8, &ch) == SASL_STEP_BAD); /* b\0a\0p */
    sasl_exchange_start(&x, SASL_MECH_PLAIN);
    CHECK(sasl_exchange_step(&x, "=", 1, &ch) == SASL_STEP_BAD); /* empty */
    CHECK(sasl_exchange_step(&x, "*", 1, &ch) == SASL_STEP_CANCEL);
    CHECK(sasl_exchange_step(&x, "AGEA", 4, &ch) == SASL_STEP_BAD); /* \0a\0: no pass */
    CHECK(sasl_exchange_step(&x, "not base64!", 11, &ch) == SASL_STEP_BAD);
    CHECK(sasl_exchange_step(&x, "AGFAAGI", 7, &ch) == SASL_STEP_BAD); /* unpadded */
    CHECK(sasl_exchange_step(&x, "AG=FAAGI", 8, &ch) == SASL_STEP_BAD);
    CHECK(sasl_exchange_step(&x, "AGEKAGI=", 8, &ch) == SASL_STEP_BAD); /* \0a\n\0b: LF */
}

/* CRAM-MD5 / SCRAM lines are only decoded: "=" empty, "*" cancel, bad base64 refused. */
static void
test_server_mechs(void)
{
    struct sasl_exchange x = {0};
    const char *ch;
    CHECK(sasl_mech_parse("cram-md5", 8) == SASL_MECH_CRAM_MD5);
    CHECK(sasl_mech_parse("SCRAM-SHA-256", 13) == SASL_MECH_SCRAM_SHA_256);
    CHECK(sasl_mech_parse("SCRAM-SHA-256-PLUS", 18) == SASL_MECH_NONE);
    CHECK(sasl_mech_is_server(SASL_MECH_SCRAM_SHA_1) && !sasl_mech_is_server(SASL_MECH_PLAIN));
    sasl_exchange_start(&x, SASL_MECH_SCRAM_SHA_256);
    CHECK(!x.has_resp);
    CHECK(sasl_exchange_step(&x, "biwsbj11LHI9YQ==", 16, &ch) == SASL_STEP_SERVER);
    CHECK(x.has_resp && x.resp_len == 10 && memcmp(x.resp, "n,,n=u,r=a", 10) == 0);
    CHECK(sasl_exchange_step(&x, "=", 1, &ch) == SASL_STEP_SERVER);
    CHECK(x.has_resp && x.resp_len == 0);
    CHECK(sasl_exchange_step(&x, "", 0, &ch) == SASL_STEP_SERVER);
    CHECK(sasl_exchange_step(&x, "*", 1, &ch) == SASL_STEP_CANCEL);
    CHECK(sasl_exchange_step(&x, "bad!", 4, &ch) == SASL_STEP_BAD);
    CHECK(!x.has_resp);
    /* a SCRAM response over SASL_SCRAM_RESP_MAX never reaches Cyrus (it echoes the nonce);
     * CRAM-MD5 keeps the general bound */
    char line[2 * SASL_RESP_MAX];
    memset(line, 'A', sizeof(line));
    CHECK(sasl_exchange_step(&x, line, 4 * (SASL_SCRAM_RESP_MAX / 3), &ch) == SASL_STEP_SERVER);
    CHECK(x.resp_len == 3 * (SASL_SCRAM_RESP_MAX / 3));
    CHECK(sasl_exchange_step(&x, line, 4 * (SASL_SCRAM_RESP_MAX / 3 + 1), &ch) == SASL_STEP_BAD);
    CHECK(!x.has_resp && x.resp_len == 0 && x.resp == NULL);
    sasl_exchange_start(&x, SASL_MECH_CRAM_MD5);
    CHECK(sasl_exchange_step(&x, line, 4 * (SASL_SCRAM_RESP_MAX / 3 + 1), &ch) == SASL_STEP_SERVER);
    CHECK(!x.server_started);
    CHECK(x.resp != NULL); /* the line waits for the auth service */
    sasl_exchange_wipe(&x);
    CHECK(x.resp == NULL); /* wiped and freed */
    /* mech_list and the advertised forms */
    unsigned m = sasl_mech_list_parse("scram-sha-256, PLAIN  bogus,CRAM-MD5");
    CHECK(m == (SASL_MECH_BIT(SASL_MECH_PLAIN) | SASL_MECH_BIT(SASL_MECH_CRAM_MD5) |
                SASL_MECH_BIT(SASL_MECH_SCRAM_SHA_256)));
    CHECK(sasl_mech_list_parse(NULL) == 0);
    char out[64];
    CHECK(sasl_mechs_format(m, " AUTH=", out, sizeof(out)) == 44);
    CHECK_STR(out, " AUTH=PLAIN AUTH=CRAM-MD5 AUTH=SCRAM-SHA-256");
    CHECK(sasl_mechs_format(SASL_MECHS_PLAIN_LOGIN, " ", out, sizeof(out)) == 12);
    CHECK_STR(out, " PLAIN LOGIN");
    CHECK(sasl_mechs_format(m, " ", out, 8) == -1);
}

static void
test_login(void)
{
    struct sasl_exchange x = {0};
    const char *ch = NULL;
    sasl_exchange_start(&x, SASL_MECH_LOGIN);
    CHECK_STR(sasl_exchange_first_challenge(&x), "VXNlcm5hbWU6");
    CHECK(sasl_exchange_step(&x, "Ym9i", 4, &ch) == SASL_STEP_CONTINUE);
    CHECK_STR(ch, "UGFzc3dvcmQ6");
    CHECK(sasl_exchange_step(&x, "cHc=", 4, &ch) == SASL_STEP_DONE);
    CHECK_STR(x.cred.user, "bob");
    CHECK_STR(x.cred.pass, "pw");
    sasl_exchange_start(&x, SASL_MECH_LOGIN);
    CHECK(sasl_exchange_step(&x, "=", 1, &ch) == SASL_STEP_BAD); /* empty user */
    sasl_exchange_start(&x, SASL_MECH_LOGIN);
    CHECK(sasl_exchange_step(&x, "Ym9i", 4, &ch) == SASL_STEP_CONTINUE);
    CHECK(sasl_exchange_step(&x, "*", 1, &ch) == SASL_STEP_CANCEL);
    sasl_exchange_wipe(&x);
}

static void
test_encode(void)
{
    struct credentials c;
    CHECK(credentials_set(&c, "alice@example.test", 18, "secret", 6) == 0);
    char out[128];
    CHECK(sasl_plain_encode(&c, out, sizeof(out)) == 36);
    CHECK_STR(out, "AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=");
    CHECK(sasl_plain_encode(&c, out, 10) == -1);
    CHECK(credentials_set(&c, "", 0, "x", 1) == -1);
    CHECK(credentials_set(&c, "a\r\nb", 4, "x", 1) == -1);
    CHECK(credentials_set(&c, "a", 1, "x\0y", 3) == -1);
}

int
main(void)
{
    test_plain();
    test_login();
    test_server_mechs();
    test_encode();
    return test_finish("test_saslmech");
}
