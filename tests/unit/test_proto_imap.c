/*
 * test_proto_imap.c: the IMAP front's state machine driven through the fake core: capabilities
 * and refusals before TLS, STARTTLS injection, literals and their limits, SASL, the login
 * hand-off for each identity, identical failures, backend outages and the error limits.
 */
#include <stdlib.h>

#include "fake_session.h"
#include "protocols.h"
#include "test.h"

static bool
contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

static struct session *
started(enum listener_tls t, enum backend_identity id)
{
    struct session *s = fake_session_new(&imap_protocol, LPROTO_IMAP, t, id);
    fake_start(s);
    return s;
}

static void
test_plaintext_refusals(void)
{
    struct session *s = started(LTLS_STARTTLS, IDENT_ID);
    const char *g = fake_client_output(s);
    CHECK(strncmp(g,
                  "* OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL- STARTTLS "
                  "LOGINDISABLED] mx.moat.test ready.\r\n",
                  200) == 0);
    CHECK(!contains(g, "AUTH="));
    fake_client_sends(s, "a1 CAPABILITY\r\n");
    const char *o = fake_client_output(s);
    CHECK(contains(o, "* CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL- STARTTLS "
                      "LOGINDISABLED\r\na1 OK"));
    fake_client_sends(s, "a2 LOGIN alice secret\r\n");
    CHECK(contains(fake_client_output(s), "a2 NO [PRIVACYREQUIRED]"));
    fake_client_sends(s, "a3 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    CHECK(contains(fake_client_output(s), "a3 NO [PRIVACYREQUIRED]"));
    fake_client_sends(s, "a4 AUTHENTICATE PLAIN\r\n");
    CHECK(contains(fake_client_output(s), "a4 NO [PRIVACYREQUIRED]"));
    CHECK(!s->backend_connect_requested);
    fake_client_sends(s, "a6 LOGIN {5}\r\n"); /* no "+": the password would follow in clear */
    CHECK(contains(fake_client_output(s), "a6 NO [PRIVACYREQUIRED]"));
    fake_client_sends(s, "a7 LOGIN alice {6}\r\n");
    CHECK(contains(fake_client_output(s), "a7 NO [PRIVACYREQUIRED]"));
    fake_client_sends(s, "a8 XYZZY {6}\r\n");
    CHECK_STR(fake_client_output(s), "a8 BAD Command not permitted before authentication.\r\n");
    fake_client_sends(s, "a5 SELECT INBOX\r\n");
    CHECK_STR(fake_client_output(s), "a5 BAD Command not permitted before authentication.\r\n");
    fake_session_free(s);

    s = started(LTLS_NONE, IDENT_ID);
    g = fake_client_output(s);
    CHECK(contains(g, "LOGINDISABLED"));
    CHECK(!contains(g, "STARTTLS"));
    fake_client_sends(s, "a STARTTLS\r\n");
    CHECK(contains(fake_client_output(s), "a BAD"));
    CHECK(!s->starttls_requested);
    fake_client_sends(s, "b LOGIN alice secret\r\n");
    CHECK(contains(fake_client_output(s), "b NO [PRIVACYREQUIRED]"));
    fake_session_free(s);
}

static void
test_starttls_injection(void)
{
    struct session *s = started(LTLS_STARTTLS, IDENT_ID);
    fake_client_output(s);
    fake_client_sends(s, "a STARTTLS\r\nb LOGIN alice secret\r\nc NOOP\r\n");
    CHECK_STR(fake_client_output(s), "a OK Begin TLS negotiation now\r\n");
    CHECK(s->starttls_requested);
    fake_tls_handshake_done(s);
    CHECK(s->discarded_at_starttls > 0);
    CHECK_STR(fake_client_output(s), "");
    CHECK(!s->backend_connect_requested);
    fake_client_sends(s, "d CAPABILITY\r\n");
    const char *o = fake_client_output(s);
    CHECK(contains(o, "AUTH=PLAIN AUTH=LOGIN"));
    CHECK(!contains(o, "STARTTLS"));
    CHECK(!contains(o, "LOGINDISABLED"));
    fake_client_sends(s, "e STARTTLS\r\n");
    CHECK(contains(fake_client_output(s), "e BAD"));
    CHECK(!s->starttls_requested);
    fake_session_free(s);

    s = started(LTLS_IMPLICIT, IDENT_ID);
    CHECK(contains(fake_client_output(s), "AUTH=PLAIN AUTH=LOGIN] mx.moat.test ready."));
    fake_client_sends(s, "a STARTTLS\r\n");
    CHECK(contains(fake_client_output(s), "a BAD"));
    fake_session_free(s);
}

/* Drive a login that reached the backend through to the AUTHENTICATE line. */
static void
backend_to_login(struct session *s, enum backend_identity id)
{
    CHECK(s->backend_connect_requested);
    CHECK(s->input_paused);
    fake_backend_event(s, BACKEND_CONNECTED);
    CHECK(s->backend_waiting);
    fake_backend_sends(s, "* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=PLAIN] Dovecot "
                          "(Debian) ready.\r\n");
    if (id == IDENT_ID) {
        CHECK_STR(fake_backend_output(s),
                  "m1 ID (\"x-originating-ip\" \"192.0.2.7\" \"x-originating-port\" \"40000\" "
                  "\"x-connected-ip\" \"203.0.113.1\" \"x-connected-port\" \"25\" "
                  "\"x-session-ext-id\" \"0000beef\")\r\n");
        fake_backend_sends(s, "* ID (\"name\" \"Dovecot\")\r\nm1 OK ID completed.\r\n");
    }
}

static void
test_login_handoff(void)
{
    struct session *s = started(LTLS_IMPLICIT, IDENT_ID);
    fake_client_output(s);
    fake_client_sends(s, "a1 LOGIN alice@example.test \"pa\\\"ss\"\r\na2 SELECT INBOX\r\n");
    CHECK_STR(fake_client_output(s), "");
    backend_to_login(s, IDENT_ID);
    /* \0alice@example.test\0pa"ss */
    CHECK_STR(fake_backend_output(s),
              "a1 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwYSJzcw==\r\n");
    fake_backend_sends(s, "* CAPABILITY IMAP4rev1 IDLE\r\na1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] "
                          "Logged in\r\n");
    /* left in the backend buffer for the relay to forward verbatim; nothing said by moat */
    CHECK_STR(fake_client_output(s), "");
    CHECK(s->relaying);
    CHECK(s->backend_in_len == strlen("a1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n"));
    CHECK(strncmp(s->backend_in, "a1 OK [CAPABILITY", 17) == 0);
    CHECK_STR(s->user, "alice@example.test");
    /* the pipelined command stays buffered for the relay */
    CHECK(s->client_in_len == strlen("a2 SELECT INBOX\r\n"));
    fake_session_free(s);

    s = started(LTLS_IMPLICIT, IDENT_PROXY_V2);
    fake_client_output(s);
    fake_client_sends(s, "x AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    backend_to_login(s, IDENT_PROXY_V2);
    CHECK_STR(fake_backend_output(s), "x AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    fake_backend_sends(s, "x OK Logged in\r\n");
    CHECK_STR(fake_client_output(s), "");
    CHECK(s->backend_in_len == strlen("x OK Logged in\r\n"));
    CHECK(s->relaying);
    fake_session_free(s);
}

static void
test_login_literals(void)
{
    struct session *s = started(LTLS_IMPLICIT, IDENT_NONE);
    fake_client_output(s);
    fake_client_sends(s, "L LOGIN {5}\r\n");
    CHECK_STR(fake_client_output(s), "+ OK\r\n");
    fake_client_sends(s, "ali");
    CHECK_STR(fake_client_output(s), "");
    fake_client_sends(s, "ce {6+}\r\nsecret\r\n");
    CHECK_STR(fake_client_output(s), "");
    backend_to_login(s, IDENT_NONE);
    CHECK_STR(fake_backend_output(s), "L AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    fake_session_free(s);
}

static void
test_literal_limits(void)
{
    static const char *huge[] = {"{4294967295}", "{18446744073709551616}",
                                 "{99999999999999999999999}", "{4097}"};
    for (size_t i = 0; i < ARRAY_SIZE(huge); i++) {
        struct session *s = started(LTLS_IMPLICIT, IDENT_ID);
        fake_client_output(s);
        char line[128];
        snprintf(line, sizeof(line), "a LOGIN %s\r\n", huge[i]);
        fake_client_sends(s, line);
        const char *o = fake_client_output(s);
        CHECK_STR(o, "a BAD [TOOBIG] Literal too large.\r\n");
        CHECK(!s->closed);
        fake_client_sends(s, "b NOOP\r\n");
        CHECK_STR(fake_client_output(s), "b OK NOOP completed.\r\n");
        fake_session_free(s);
    }
    struct session *s = started(LTLS_IMPLICIT, IDENT_ID);
    fake_client_output(s);
    fake_client_sends(s, "a LOGIN {5000+}\r\n");
    const char *o = fake_client_output(s);
    CHECK(contains(o, "a BAD [TOOBIG]"));
    CHECK(contains(o, "* BYE"));
    CHECK(!contains(o, "+ "));
    CHECK(s->closed);
    fake_session_free(s);

    s = started(LTLS_STARTTLS, IDENT_ID); /* before TLS: literal still bounded */
    fake_client_output(s);
    fake_client_sends(s, "a LOGIN {18446744073709551617}\r\n");
    CHECK_STR(fake_client_output(s), "a BAD [TOOBIG] Literal too large.\r\n");
    fake_session_free(s);
}

static void
test_garbage(void)
{
    struct session *s = started(LTLS_IMPLICIT, IDENT_ID);
    fake_client_output(s);
    fake_client_sends(s, "a*b NOOP\r\n");
    CHECK_STR(fake_client_output(s), "* BAD Invalid tag\r\n");
    fake_client_sends(s, "a{b NOOP\r\n");
    CHECK_STR(fake_client_output(s), "* BAD Invalid tag\r\n");
    char tag[80];
    memset(tag, 't', 65);
    memcpy(tag + 65, " NOOP\r\n", 8);
    fake_client_send(s, tag, 73);
    CHECK_STR(fake_client_output(s), "* BAD Invalid tag\r\n");
    fake_client_send(s, "a NO\0OP\r\n", 9);
    CHECK_STR(fake_client_output(s), "* BAD NUL octet in command\r\n");
    fake_client_send(s, "b LOGIN {3}\r\na\0b c\r\n", 20);
    CHECK_STR(fake_client_output(s), "b BAD NUL octet in literal\r\n");
    fake_client_send(s, "\x01\xff\xfe\r\n", 5);
    CHECK_STR(fake_client_output(s), "* BAD Invalid tag\r\n");
    char big[9000];
    memset(big, 'A', sizeof(big));
    fake_client_send(s, big, sizeof(big));
    CHECK_STR(fake_client_output(s), "* BAD Command line too long.\r\n");
    fake_client_sends(s, "still long\r\nz NOOP\r\n");
    CHECK_STR(fake_client_output(s), "z OK NOOP completed.\r\n");
    CHECK(!s->closed);
    fake_session_free(s);

    s = started(LTLS_IMPLICIT, IDENT_ID);
    fake_client_output(s);
    for (int i = 0; i < 10; i++)
        fake_client_sends(s, "x FOO\r\n");
    CHECK(contains(fake_client_output(s), "* BYE Too many errors"));
    CHECK(s->closed && s->close_reason == REASON_TOO_MANY_ERRORS);
    fake_session_free(s);
}

static void
test_authenticate(void)
{
    struct session *s = started(LTLS_IMPLICIT, IDENT_NONE);
    fake_client_output(s);
    fake_client_sends(s, "a AUTHENTICATE PLAIN\r\n");
    CHECK_STR(fake_client_output(s), "+ \r\n");
    fake_client_sends(s, "!!!!\r\n");
    CHECK_STR(fake_client_output(s), "a BAD Invalid SASL response.\r\n");
    fake_client_sends(s, "b AUTHENTICATE PLAIN\r\n*\r\n");
    CHECK_STR(fake_client_output(s), "+ \r\nb BAD Authentication cancelled.\r\n");
    fake_client_sends(s, "c AUTHENTICATE PLAIN %%%%\r\n");
    CHECK(contains(fake_client_output(s), "c BAD"));
    fake_client_sends(s, "c2 AUTHENTICATE PLAIN AGFsaWNl\r\n"); /* no password */
    CHECK_STR(fake_client_output(s), "c2 BAD Invalid SASL response.\r\n");
    fake_client_sends(s, "d AUTHENTICATE CRAM-MD5\r\n");
    CHECK(contains(fake_client_output(s), "d NO"));
    fake_client_sends(s, "e AUTHENTICATE LOGIN\r\n");
    CHECK_STR(fake_client_output(s), "+ VXNlcm5hbWU6\r\n");
    fake_client_sends(s, "YWxpY2U=\r\n");
    CHECK_STR(fake_client_output(s), "+ UGFzc3dvcmQ6\r\n");
    fake_client_sends(s, "c2VjcmV0\r\n");
    CHECK(s->backend_connect_requested);
    backend_to_login(s, IDENT_NONE);
    CHECK_STR(fake_backend_output(s), "e AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    fake_session_free(s);
}

/* A refused literal before TLS is a command and an error: it cannot repeat forever. An
 * over-long line whose end is already here never swallows the next command. */
static void
test_refusals_counted_and_long_lines(void)
{
    struct session *s = started(LTLS_STARTTLS, IDENT_ID);
    fake_client_output(s);
    s->listener.limits.max_errors = 3;
    fake_client_sends(s, "a LOGIN {1}\r\n");
    fake_client_sends(s, "b LOGIN {1}\r\n");
    CHECK(s->errors == 2 && !s->closed);
    fake_client_sends(s, "c XYZZY {1}\r\n");
    CHECK(contains(fake_client_output(s), "* BYE Too many errors\r\n") && s->closed);
    fake_session_free(s);
    s = started(LTLS_STARTTLS, IDENT_ID);
    fake_client_output(s);
    s->listener.limits.max_preauth_commands = 2;
    fake_client_sends(s, "a LOGIN {1}\r\n");
    fake_client_sends(s, "b LOGIN {1}\r\n");
    fake_client_sends(s, "c LOGIN {1}\r\n");
    CHECK(contains(fake_client_output(s), "* BYE Too many commands\r\n") && s->closed);
    fake_session_free(s);

    char line[10000];
    memset(line, 'A', sizeof(line));
    memcpy(line + sizeof(line) - 11, "\r\nb NOOP\r\n", 11);
    s = started(LTLS_IMPLICIT, IDENT_NONE);
    fake_client_output(s);
    fake_client_sends(s, "a AUTHENTICATE PLAIN\r\n");
    CHECK_STR(fake_client_output(s), "+ \r\n");
    fake_client_send(s, line, sizeof(line));
    CHECK_STR(fake_client_output(s), "a BAD Invalid SASL response.\r\nb OK NOOP completed.\r\n");
    memcpy(line, "a NOOP ", 7);
    fake_client_send(s, line, sizeof(line));
    CHECK_STR(fake_client_output(s), "* BAD Command line too long.\r\nb OK NOOP completed.\r\n");
    fake_session_free(s);
}

static void
test_failures(void)
{
    static const char *refusals[] = {
        "t NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        "t NO [AUTHENTICATIONFAILED] Unknown user\r\n",
        "t BAD Something odd\r\n",
    };
    struct session *s = started(LTLS_IMPLICIT, IDENT_ID);
    fake_client_output(s);
    for (size_t i = 0; i < ARRAY_SIZE(refusals); i++) {
        s->backend_connect_requested = false;
        fake_client_sends(s, "t LOGIN alice wrong\r\n");
        backend_to_login(s, IDENT_ID);
        fake_backend_output(s);
        fake_backend_sends(s, refusals[i]);
        const char *o = fake_client_output(s);
        if (i + 1 < ARRAY_SIZE(refusals)) {
            CHECK_STR(o, "t NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
            CHECK(s->backend_closed);
            CHECK(!s->input_paused);
            CHECK(s->phase == PHASE_PREAUTH);
            CHECK(!s->closed);
        } else {
            CHECK_STR(o, "t NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                         "* BYE Too many authentication failures\r\n");
            CHECK(s->closed && s->close_reason == REASON_AUTH_FAILED);
        }
    }
    fake_session_free(s);

    static const enum backend_event outages[] = {BACKEND_FAILED, BACKEND_TIMEOUT, BACKEND_EOF,
                                                 BACKEND_ERROR};
    s = started(LTLS_IMPLICIT, IDENT_ID);
    fake_client_output(s);
    for (size_t i = 0; i < ARRAY_SIZE(outages); i++) {
        fake_client_sends(s, "u LOGIN alice secret\r\n");
        if (i % 2 == 1) {
            fake_backend_event(s, BACKEND_CONNECTED);
            fake_backend_output(s);
        }
        fake_backend_event(s, outages[i]);
        CHECK_STR(fake_client_output(s), "u NO [UNAVAILABLE] Service temporarily unavailable.\r\n");
        CHECK(!s->closed && !s->input_paused);
    }
    /* an unexpected greeting or ID reply is an outage too */
    fake_client_sends(s, "v LOGIN alice secret\r\n");
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "* BYE go away\r\n");
    CHECK_STR(fake_client_output(s), "v NO [UNAVAILABLE] Service temporarily unavailable.\r\n");
    CHECK_STR(fake_backend_output(s), "");
    fake_client_sends(s, "w NOOP\r\n");
    CHECK_STR(fake_client_output(s), "w OK NOOP completed.\r\n");
    fake_session_free(s);
}

static void
test_misc_commands(void)
{
    struct session *s = started(LTLS_STARTTLS, IDENT_ID);
    fake_client_output(s);
    fake_client_sends(s, "i ID (\"name\" \"test\" \"version\" {3}\r\n");
    CHECK_STR(fake_client_output(s), "+ OK\r\n");
    fake_client_sends(s, "1.0)\r\nj ID NIL\r\nk ID (\"odd\")\r\n");
    CHECK_STR(fake_client_output(s), "* ID NIL\r\ni OK ID completed.\r\n* ID NIL\r\nj OK ID "
                                     "completed.\r\nk BAD Invalid ID arguments\r\n");
    fake_client_sends(s, "n noop\r\n");
    CHECK_STR(fake_client_output(s), "n OK NOOP completed.\r\n");
    s->proto->farewell(s, REASON_IDLE_TIMEOUT);
    CHECK_STR(fake_client_output(s), "* BYE Autologout; idle for too long\r\n");
    s->proto->farewell(s, REASON_SHUTDOWN);
    CHECK_STR(fake_client_output(s), "* BYE Server shutting down\r\n");
    fake_client_sends(s, "o LOGOUT\r\n");
    CHECK_STR(fake_client_output(s), "* BYE Logging out\r\no OK LOGOUT completed.\r\n");
    CHECK(s->closed && s->close_reason == REASON_CLIENT_QUIT);
    fake_session_free(s);
}

/* max_tls_handshakes reached: a temporary refusal, the session goes on in plaintext */
static void
test_starttls_busy(void)
{
    struct session *s = started(LTLS_STARTTLS, IDENT_ID);
    fake_client_output(s);
    s->tls_busy = true;
    fake_client_sends(s, "a STARTTLS\r\n");
    CHECK_STR(fake_client_output(s),
              "a NO [UNAVAILABLE] TLS not available due to temporary reason\r\n");
    CHECK(!s->starttls_requested && !s->closed);
    s->tls_busy = false;
    fake_client_sends(s, "b STARTTLS\r\n");
    CHECK_STR(fake_client_output(s), "b OK Begin TLS negotiation now\r\n");
    CHECK(s->starttls_requested);
    fake_session_free(s);
}

int
main(void)
{
    test_plaintext_refusals();
    test_starttls_injection();
    test_starttls_busy();
    test_login_handoff();
    test_login_literals();
    test_literal_limits();
    test_garbage();
    test_authenticate();
    test_refusals_counted_and_long_lines();
    test_failures();
    test_misc_commands();
    return test_finish("test_proto_imap");
}
