/*
 * test_proto_pop3.c: the POP3 front's state machine driven through the fake core: refusals
 * before TLS, the STLS purge, CAPA, USER/PASS and AUTH, the hand-off for each identity, failed
 * logins that look alike, an unavailable backend, bad input. Asserts exact bytes both ways.
 */
#include <string.h>

#include "fake_session.h"
#include "pop3_parse.h"
#include "protocols.h"
#include "test.h"

#define PLAINTEXT_REFUSED                                                                          \
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n"
#define CAPA_PLAIN "+OK\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
#define CAPA_TLS "+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
#define AUTH_FAILED "-ERR [AUTH] Authentication failed.\r\n"
#define TEMP_FAIL "-ERR [SYS/TEMP] Service temporarily unavailable\r\n"
/* base64("\0alice@example.test\0alice-secret-1") */
#define ALICE_B64 "AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQtMQ=="

static struct session *
start(enum listener_tls t, enum backend_identity id)
{
    struct session *s = fake_session_new(&pop3_protocol, LPROTO_POP3, t, id);
    fake_start(s);
    CHECK_STR(fake_client_output(s), "+OK mx.moat.test ready.\r\n");
    return s;
}

/* A session on a STARTTLS listener, after STLS and the handshake. */
static struct session *
start_tls(enum backend_identity id)
{
    struct session *s = start(LTLS_STARTTLS, id);
    fake_client_sends(s, "STLS\r\n");
    CHECK_STR(fake_client_output(s), "+OK Begin TLS negotiation\r\n");
    CHECK(s->starttls_requested);
    fake_tls_handshake_done(s);
    CHECK_STR(fake_client_output(s), "");
    return s;
}

static void
test_refusals_before_tls(void)
{
    struct session *s = start(LTLS_STARTTLS, IDENT_XCLIENT);
    fake_client_sends(s, "CAPA\r\n");
    CHECK_STR(fake_client_output(s), CAPA_PLAIN);
    fake_client_sends(s, "USER alice@example.test\r\n");
    CHECK_STR(fake_client_output(s), PLAINTEXT_REFUSED);
    fake_client_sends(s, "PASS alice-secret-1\r\n");
    CHECK_STR(fake_client_output(s), PLAINTEXT_REFUSED);
    fake_client_sends(s, "AUTH PLAIN " ALICE_B64 "\r\n");
    CHECK_STR(fake_client_output(s), PLAINTEXT_REFUSED);
    fake_client_sends(s, "AUTH\r\n");
    CHECK_STR(fake_client_output(s), PLAINTEXT_REFUSED);
    fake_client_sends(s, "auth login\r\n");
    CHECK_STR(fake_client_output(s), PLAINTEXT_REFUSED);
    fake_client_sends(s, "APOP alice 0123456789abcdef\r\n");
    CHECK(strncmp(fake_client_output(s), "-ERR", 4) == 0);
    fake_client_sends(s, "NOOP\r\n");
    CHECK_STR(fake_client_output(s), "+OK\r\n");
    CHECK(!s->backend_connect_requested);
    CHECK_STR(fake_backend_output(s), "");
    CHECK(!s->closed);
    fake_session_free(s);
}

static void
test_no_tls_listener(void)
{
    struct session *s = start(LTLS_NONE, IDENT_XCLIENT);
    fake_client_sends(s, "CAPA\r\n");
    CHECK_STR(fake_client_output(s), "+OK\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n");
    fake_client_sends(s, "STLS\r\n");
    CHECK_STR(fake_client_output(s), "-ERR STLS not available\r\n");
    CHECK(!s->starttls_requested);
    fake_client_sends(s, "USER alice@example.test\r\nPASS x\r\nAUTH PLAIN " ALICE_B64 "\r\n");
    CHECK_STR(fake_client_output(s), PLAINTEXT_REFUSED PLAINTEXT_REFUSED PLAINTEXT_REFUSED);
    CHECK(!s->backend_connect_requested);
    fake_session_free(s);
}

static void
test_stls_injection(void)
{
    struct session *s = start(LTLS_STARTTLS, IDENT_XCLIENT);
    fake_client_sends(s, "STLS\r\nUSER alice@example.test\r\nCAPA\r\n");
    CHECK_STR(fake_client_output(s), "+OK Begin TLS negotiation\r\n");
    CHECK(s->starttls_requested);
    fake_tls_handshake_done(s);
    CHECK(s->discarded_at_starttls == strlen("USER alice@example.test\r\nCAPA\r\n"));
    CHECK_STR(fake_client_output(s), "");
    /* after TLS: no STLS, logins offered, a PASS without USER is refused */
    fake_client_sends(s, "CAPA\r\n");
    CHECK_STR(fake_client_output(s), CAPA_TLS);
    fake_client_sends(s, "STLS\r\n");
    CHECK_STR(fake_client_output(s), "-ERR TLS already active\r\n");
    fake_client_sends(s, "PASS alice-secret-1\r\n");
    CHECK_STR(fake_client_output(s), "-ERR No user name given\r\n");
    CHECK(!s->backend_connect_requested);
    fake_session_free(s);
}

static void
test_implicit_capa(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
    fake_client_sends(s, "capa\r\n");
    CHECK_STR(fake_client_output(s), CAPA_TLS);
    fake_client_sends(s, "STLS\r\n");
    CHECK_STR(fake_client_output(s), "-ERR TLS already active\r\n");
    fake_client_sends(s, "AUTH\r\n");
    CHECK_STR(fake_client_output(s), "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
    fake_client_sends(s, "QUIT\r\n");
    CHECK_STR(fake_client_output(s), "+OK Bye\r\n");
    CHECK(s->closed && s->close_reason == REASON_CLIENT_QUIT);
    fake_session_free(s);
}

/* Drive a login that reached the backend to its end with Dovecot's replies. */
static void
backend_accepts(struct session *s, bool xclient)
{
    CHECK(s->backend_connect_requested);
    CHECK(s->input_paused);
    fake_backend_event(s, BACKEND_CONNECTED);
    CHECK(s->backend_waiting);
    fake_backend_sends(s, "+OK [XCLIENT] Dovecot (Debian) ready.\r\n");
    if (xclient) {
        CHECK_STR(fake_backend_output(s), "XCLIENT ADDR=192.0.2.7 PORT=40000 SESSION=0000beef\r\n");
        fake_backend_sends(s, "+OK Updated\r\n");
    }
    CHECK_STR(fake_backend_output(s), "AUTH PLAIN " ALICE_B64 "\r\n");
    CHECK_STR(fake_client_output(s), "");
    fake_backend_sends(s, "+OK Logged in.\r\n");
    /* the login reply stays buffered: the relay forwards it verbatim */
    CHECK_STR(fake_client_output(s), "");
    CHECK(s->relaying);
    CHECK(s->backend_in_len == 16 && memcmp(s->backend_in, "+OK Logged in.\r\n", 16) == 0);
    CHECK_STR(s->user, "alice@example.test");
}

static void
test_user_pass_xclient(void)
{
    struct session *s = start_tls(IDENT_XCLIENT);
    fake_client_sends(s, "USER alice@example.test\r\n");
    CHECK_STR(fake_client_output(s), "+OK\r\n");
    CHECK(!s->backend_connect_requested);
    fake_client_sends(s, "PASS alice-secret-1\r\nSTAT\r\n");
    backend_accepts(s, true);
    /* the pipelined STAT is left for the relay, never answered by moat */
    CHECK(s->client_in_len == 6);
    fake_session_free(s);
}

static void
test_auth_plain_ir_proxy(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_PROXY_V2);
    fake_client_sends(s, "AUTH PLAIN " ALICE_B64 "\r\n");
    backend_accepts(s, false);
    fake_session_free(s);
}

static void
test_auth_plain_continuation(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_NONE);
    fake_client_sends(s, "AUTH PLAIN\r\n");
    CHECK_STR(fake_client_output(s), "+ \r\n");
    fake_client_sends(s, ALICE_B64 "\r\n");
    backend_accepts(s, false);
    fake_session_free(s);
}

static void
test_auth_login(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_NONE);
    fake_client_sends(s, "AUTH LOGIN\r\n");
    CHECK_STR(fake_client_output(s), "+ VXNlcm5hbWU6\r\n");
    fake_client_sends(s, "YWxpY2VAZXhhbXBsZS50ZXN0\r\n"); /* alice@example.test */
    CHECK_STR(fake_client_output(s), "+ UGFzc3dvcmQ6\r\n");
    fake_client_sends(s, "YWxpY2Utc2VjcmV0LTE=\r\n"); /* alice-secret-1 */
    backend_accepts(s, false);
    fake_session_free(s);
}

/* A server-run exchange abandoned on a bad or over-long line drops its parked job. */
static void
test_server_exchange_abandoned(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
    s->auth_mechs = SASL_MECH_BIT(SASL_MECH_CRAM_MD5);
    fake_client_sends(s, "AUTH CRAM-MD5\r\n");
    CHECK(s->auth_steps == 1);
    fake_auth_challenge(s, "PDEyMz4=");
    CHECK_STR(fake_client_output(s), "+ PDEyMz4=\r\n");
    fake_client_send(s, "\0\r\n", 3);
    CHECK_STR(fake_client_output(s), "-ERR [AUTH] Invalid authentication data\r\n");
    CHECK(s->auth_aborted);
    s->auth_aborted = false;
    fake_client_sends(s, "AUTH CRAM-MD5\r\n");
    fake_auth_challenge(s, "PDEyMz4=");
    fake_client_output(s);
    char line[POP3_SASL_LINE_MAX + 3];
    memset(line, 'A', sizeof(line));
    memcpy(line + sizeof(line) - 2, "\r\n", 2);
    fake_client_send(s, line, sizeof(line));
    CHECK_STR(fake_client_output(s), "-ERR Line too long\r\n");
    CHECK(s->auth_aborted);
    fake_client_sends(s, "NOOP\r\n");
    CHECK_STR(fake_client_output(s), "+OK\r\n");
    fake_session_free(s);
}

static void
test_auth_cancel_and_bad(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_NONE);
    fake_client_sends(s, "AUTH LOGIN\r\n");
    CHECK_STR(fake_client_output(s), "+ VXNlcm5hbWU6\r\n");
    fake_client_sends(s, "*\r\n");
    CHECK_STR(fake_client_output(s), "-ERR Authentication cancelled\r\n");
    fake_client_sends(s, "AUTH PLAIN !!!notbase64\r\n");
    CHECK_STR(fake_client_output(s), "-ERR [AUTH] Invalid authentication data\r\n");
    fake_client_sends(s, "AUTH PLAIN\r\n");
    CHECK_STR(fake_client_output(s), "+ \r\n");
    fake_client_sends(s, "%%%%\r\n");
    CHECK_STR(fake_client_output(s), "-ERR [AUTH] Invalid authentication data\r\n");
    fake_client_sends(s, "AUTH CRAM-MD5\r\n");
    CHECK_STR(fake_client_output(s), "-ERR Unsupported authentication mechanism\r\n");
    fake_client_sends(s, "AUTH PLAIN\r\n");
    CHECK_STR(fake_client_output(s), "+ \r\n");
    fake_client_send(s, "AG\0FsaQ==\r\n", 11);
    CHECK_STR(fake_client_output(s), "-ERR [AUTH] Invalid authentication data\r\n");
    /* an initial response of "=" is an empty PLAIN message: bad, never a continuation */
    fake_client_sends(s, "AUTH PLAIN =\r\n");
    CHECK_STR(fake_client_output(s), "-ERR [AUTH] Invalid authentication data\r\n");
    CHECK(!s->backend_connect_requested);
    CHECK(!s->closed);
    fake_session_free(s);
}

static void
test_failed_logins_alike(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
    const char *replies[] = {"-ERR [AUTH] Authentication failed.\r\n",
                             "-ERR [AUTH] Unknown user or whatever the backend says\r\n"};
    for (int i = 0; i < 2; i++) {
        s->backend_connect_requested = false;
        fake_client_sends(s, "USER alice@example.test\r\nPASS wrong\r\n");
        CHECK_STR(fake_client_output(s), "+OK\r\n");
        fake_backend_event(s, BACKEND_CONNECTED);
        fake_backend_sends(s, "+OK Dovecot ready.\r\n");
        fake_backend_sends(s, "+OK Updated\r\n");
        fake_backend_output(s);
        fake_backend_sends(s, replies[i]);
        CHECK_STR(fake_client_output(s), AUTH_FAILED);
        CHECK(s->backend_closed);
        CHECK(!s->input_paused);
        CHECK(!s->relaying && !s->closed);
    }
    /* the third failure (max_failures = 3) closes */
    fake_client_sends(s, "AUTH PLAIN " ALICE_B64 "\r\n");
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "+OK Dovecot ready.\r\n+OK Updated\r\n-ERR [AUTH] no\r\n");
    CHECK_STR(fake_client_output(s), "-ERR [AUTH] Too many authentication failures\r\n");
    CHECK(s->closed && s->close_reason == REASON_AUTH_FAILED);
    fake_session_free(s);
}

static void
test_backend_unavailable(void)
{
    enum backend_event evs[] = {BACKEND_FAILED, BACKEND_TIMEOUT, BACKEND_EOF, BACKEND_ERROR};
    for (size_t i = 0; i < ARRAY_SIZE(evs); i++) {
        struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
        fake_client_sends(s, "AUTH PLAIN " ALICE_B64 "\r\n");
        if (evs[i] != BACKEND_FAILED)
            fake_backend_event(s, BACKEND_CONNECTED);
        fake_backend_event(s, evs[i]);
        CHECK_STR(fake_client_output(s), TEMP_FAIL);
        CHECK(!s->closed && !s->relaying && !s->input_paused);
        fake_client_sends(s, "NOOP\r\n");
        CHECK_STR(fake_client_output(s), "+OK\r\n");
        fake_session_free(s);
    }
    /* unexpected replies are temporary failures too */
    const char *bad[] = {"-ERR no greeting\r\n", "* OK imap?\r\n", "+OKAY\r\n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
        fake_client_sends(s, "AUTH PLAIN " ALICE_B64 "\r\n");
        fake_backend_event(s, BACKEND_CONNECTED);
        fake_backend_sends(s, bad[i]);
        CHECK_STR(fake_client_output(s), TEMP_FAIL);
        CHECK_STR(fake_backend_output(s), "");
        CHECK(s->backend_closed);
        fake_session_free(s);
    }
    struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
    fake_client_sends(s, "AUTH PLAIN " ALICE_B64 "\r\n");
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "+OK ready\r\n");
    fake_backend_output(s);
    fake_backend_sends(s, "-ERR not trusted\r\n");
    CHECK_STR(fake_client_output(s), TEMP_FAIL);
    CHECK_STR(fake_backend_output(s), "");
    fake_session_free(s);
}

static void
test_bad_input(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
    fake_client_send(s, "NO\0OP\r\n", 7);
    CHECK_STR(fake_client_output(s), "-ERR Invalid characters in command\r\n");
    fake_client_sends(s, "\x01\xff\xfe garbage\r\n");
    CHECK_STR(fake_client_output(s), "-ERR Unknown command\r\n");
    fake_client_sends(s, "\r\n");
    CHECK_STR(fake_client_output(s), "-ERR Unknown command\r\n");
    fake_client_sends(s, "STAT\r\n");
    CHECK_STR(fake_client_output(s), "-ERR Not authenticated\r\n");
    char longline[3000];
    memset(longline, 'A', sizeof(longline));
    fake_client_send(s, longline, sizeof(longline));
    CHECK_STR(fake_client_output(s), "-ERR Line too long\r\n");
    fake_client_sends(s, "AAAA\r\nNOOP\r\n");
    CHECK_STR(fake_client_output(s), "+OK\r\n");
    /* an over-long SASL response cancels the exchange */
    fake_client_sends(s, "AUTH PLAIN\r\n");
    CHECK_STR(fake_client_output(s), "+ \r\n");
    fake_client_send(s, longline, sizeof(longline));
    fake_client_sends(s, "\r\nNOOP\r\n");
    CHECK_STR(fake_client_output(s), "-ERR Line too long\r\n+OK\r\n");
    CHECK(!s->closed);
    CHECK(!s->backend_connect_requested);
    fake_session_free(s);
}

static void
test_max_errors(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
    for (int i = 0; i < 9; i++)
        fake_client_sends(s, "BOGUS\r\n");
    CHECK(!s->closed);
    fake_client_output(s);
    fake_client_sends(s, "BOGUS\r\n");
    CHECK_STR(fake_client_output(s), "-ERR Too many errors\r\n");
    CHECK(s->closed && s->close_reason == REASON_TOO_MANY_ERRORS);
    fake_session_free(s);
}

static void
test_max_commands(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
    for (int i = 0; i < 50; i++)
        fake_client_sends(s, "NOOP\r\n");
    CHECK(!s->closed);
    fake_client_output(s);
    fake_client_sends(s, "NOOP\r\n");
    CHECK_STR(fake_client_output(s), "-ERR Too many commands\r\n");
    CHECK(s->closed && s->close_reason == REASON_TOO_MANY_COMMANDS);
    fake_session_free(s);
}

static void
test_farewell(void)
{
    struct session *s = start(LTLS_IMPLICIT, IDENT_XCLIENT);
    pop3_protocol.farewell(s, REASON_IDLE_TIMEOUT);
    CHECK_STR(fake_client_output(s), "-ERR [SYS/TEMP] Autologout; idle for too long\r\n");
    pop3_protocol.farewell(s, REASON_SHUTDOWN);
    CHECK_STR(fake_client_output(s), "-ERR [SYS/TEMP] Server shutting down\r\n");
    CHECK_STR(pop3_protocol.state_name(s), "authorization");
    fake_session_free(s);
}

/* max_tls_handshakes reached: a temporary refusal, the session goes on in plaintext */
static void
test_stls_busy(void)
{
    struct session *s = start(LTLS_STARTTLS, IDENT_XCLIENT);
    s->tls_busy = true;
    fake_client_sends(s, "STLS\r\n");
    CHECK_STR(fake_client_output(s),
              "-ERR [SYS/TEMP] TLS not available due to temporary reason\r\n");
    CHECK(!s->starttls_requested && !s->closed);
    s->tls_busy = false;
    fake_client_sends(s, "STLS\r\n");
    CHECK_STR(fake_client_output(s), "+OK Begin TLS negotiation\r\n");
    CHECK(s->starttls_requested);
    fake_session_free(s);
}

int
main(void)
{
    test_refusals_before_tls();
    test_no_tls_listener();
    test_stls_injection();
    test_implicit_capa();
    test_user_pass_xclient();
    test_auth_plain_ir_proxy();
    test_auth_plain_continuation();
    test_auth_login();
    test_auth_cancel_and_bad();
    test_server_exchange_abandoned();
    test_failed_logins_alike();
    test_backend_unavailable();
    test_bad_input();
    test_max_errors();
    test_stls_busy();
    test_max_commands();
    test_farewell();
    return test_finish("test_proto_pop3");
}
