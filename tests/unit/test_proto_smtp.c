/*
 * test_proto_smtp.c: the SMTP front's state machine driven through the fake core: pre-backend
 * dialogue, STARTTLS discarding, AUTH before/after TLS, relay policy, the XCLIENT hand-off,
 * pipelined replies in order, DATA canonicalisation and backend failures.
 */
#include <string.h>

#include "fake_session.h"
#include "protocols.h"
#include "test.h"

static bool
has(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

static struct session *
mx_session(enum backend_identity id)
{
    struct session *s = fake_session_new(&smtp_protocol, LPROTO_SMTP, LTLS_STARTTLS, id);
    fake_start(s);
    CHECK_STR(fake_client_output(s), "220 mx.moat.test ESMTP\r\n");
    return s;
}

static void
test_preauth(void)
{
    struct session *s = mx_session(IDENT_XCLIENT);
    fake_client_sends(s, "MAIL FROM:<a@b>\r\n");
    CHECK(has(fake_client_output(s), "503 5.5.1"));
    fake_client_sends(s, "EHLO client.example\r\n");
    const char *o = fake_client_output(s);
    CHECK(has(o, "250-mx.moat.test\r\n") && has(o, "STARTTLS") && !has(o, "AUTH"));
    CHECK(has(o, "PIPELINING") && has(o, "SIZE 10240000") && has(o, "250 SMTPUTF8\r\n"));
    CHECK(!has(o, "CHUNKING") && !has(o, "XCLIENT") && !has(o, "VRFY"));
    fake_client_sends(s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    CHECK(has(fake_client_output(s), "503 5.5.1 Error: authentication not enabled"));
    fake_client_sends(s, "VRFY root\r\nBDAT 5 LAST\r\nFOO\r\nNOOP\r\nRSET\r\nHELP\r\n");
    o = fake_client_output(s);
    CHECK(has(o, "502 5.5.1") && has(o, "500 5.5.2") && has(o, "250 2.0.0 Ok") && has(o, "214"));
    fake_client_sends(s, "RCPT TO:<bob@example.test>\r\n");
    CHECK(has(fake_client_output(s), "503 5.5.1 Error: need MAIL command"));
    fake_client_sends(s, "QUIT\r\n");
    CHECK(has(fake_client_output(s), "221 2.0.0"));
    CHECK(s->closed && s->close_reason == REASON_CLIENT_QUIT);
    CHECK(!s->backend_connect_requested);
    fake_session_free(s);
}

static void
test_limits(void)
{
    struct session *s = mx_session(IDENT_XCLIENT);
    char longline[3000];
    memset(longline, 'A', sizeof(longline));
    fake_client_send(s, longline, sizeof(longline));
    fake_client_sends(s, "\r\nNOOP\r\n");
    const char *o = fake_client_output(s);
    CHECK(has(o, "500 5.5.2 Error: line too long") && has(o, "250 2.0.0 Ok"));
    CHECK(!s->closed);
    fake_client_send(s, "NO\0OP\r\n", 7);
    CHECK(has(fake_client_output(s), "500 5.5.2"));
    for (int i = 0; i < 10 && !s->closed; i++)
        fake_client_sends(s, "JUNK\r\n");
    CHECK(s->closed && s->close_reason == REASON_TOO_MANY_ERRORS);
    CHECK(has(fake_client_output(s), "421 4.7.0"));
    fake_session_free(s);

    s = mx_session(IDENT_XCLIENT);
    fake_client_sends(s, "GET / HTTP/1.1\r\nHost: x\r\n");
    CHECK(s->closed && has(fake_client_output(s), "421 "));
    fake_session_free(s);
}

static void
test_starttls(void)
{
    struct session *s =
        fake_session_new(&smtp_protocol, LPROTO_SUBMISSION, LTLS_STARTTLS, IDENT_XCLIENT);
    fake_start(s);
    fake_client_output(s);
    fake_client_sends(s, "EHLO c\r\n");
    CHECK(!has(fake_client_output(s), "AUTH"));
    fake_client_sends(s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    CHECK(has(fake_client_output(s), "538 5.7.11"));
    fake_client_sends(s, "MAIL FROM:<alice@example.test>\r\n");
    CHECK(has(fake_client_output(s), "530 5.7.0"));
    fake_client_sends(s, "STARTTLS\r\nRSET\r\nMAIL FROM:<a@b>\r\n");
    CHECK_STR(fake_client_output(s), "220 2.0.0 Ready to start TLS\r\n");
    CHECK(s->starttls_requested);
    fake_tls_handshake_done(s);
    CHECK(s->discarded_at_starttls > 0);
    CHECK_STR(fake_client_output(s), "");
    fake_client_sends(s, "MAIL FROM:<a@b>\r\n");
    CHECK(has(fake_client_output(s), "503 5.5.1 Error: send HELO/EHLO first"));
    fake_client_sends(s, "EHLO c\r\n");
    const char *o = fake_client_output(s);
    CHECK(has(o, "AUTH PLAIN LOGIN") && !has(o, "STARTTLS"));
    fake_client_sends(s, "STARTTLS\r\n");
    CHECK(has(fake_client_output(s), "503 5.5.1"));
    fake_session_free(s);
}

/* Walk the XCLIENT hand-off to its end. */
static void
handoff(struct session *s, const char *login_expect)
{
    CHECK(s->backend_connect_requested);
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "220 backend ESMTP\r\n");
    CHECK_STR(fake_backend_output(s), "EHLO moat.internal\r\n");
    fake_backend_sends(s, "250-backend\r\n250-XCLIENT NAME ADDR PORT\r\n250 8BITMIME\r\n");
    const char *o = fake_backend_output(s);
    CHECK(has(o, "XCLIENT HELO=client.example PROTO=ESMTP ADDR=192.0.2.7 PORT=40000 "
                 "NAME=[UNAVAILABLE]"));
    if (login_expect != NULL)
        CHECK(has(o, login_expect));
    fake_backend_sends(s, "220 backend ESMTP\r\n");
    CHECK_STR(fake_backend_output(s), "EHLO client.example\r\n");
}

static void
test_mx_relay(void)
{
    struct session *s = mx_session(IDENT_XCLIENT);
    fake_client_sends(s, "EHLO client.example\r\n");
    fake_client_output(s);
    fake_client_sends(s, "MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.test>\r\n"
                         "RCPT TO:<victim@gmail.example>\r\nRCPT TO:<bob%evil@example.test>\r\n"
                         "DATA\r\n");
    CHECK_STR(fake_client_output(s), "");
    handoff(s, NULL);
    fake_backend_sends(s, "250-backend\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    const char *b = fake_backend_output(s);
    CHECK(has(b, "MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.test>\r\n"));
    CHECK(!has(b, "gmail") && !has(b, "evil"));
    CHECK_STR(fake_client_output(s), "");
    fake_backend_sends(s, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
    const char *o = fake_client_output(s);
    CHECK_STR(o, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 Relay access denied\r\n"
                 "554 5.7.1 Relay access denied\r\n");
    CHECK_STR(fake_backend_output(s), "DATA\r\n");
    fake_backend_sends(s, "354 go\r\n");
    CHECK_STR(fake_client_output(s), "354 go\r\n");
    fake_client_sends(s, "Subject: x\r\n\r\n..dot\nbare\n.\nMAIL FROM:<s@x>\r\n.\r\nQUIT\r\n");
    CHECK_STR(fake_backend_output(s),
              "Subject: x\r\n\r\n..dot\r\nbare\r\n..\r\nMAIL FROM:<s@x>\r\n.\r\n");
    CHECK_STR(fake_client_output(s), "");
    fake_backend_sends(s, "250 2.0.0 Ok: queued\r\n");
    CHECK_STR(fake_client_output(s), "250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n");
    CHECK(s->closed);
    fake_session_free(s);
}

static void
test_data_reject_and_backend_death(void)
{
    struct session *s = mx_session(IDENT_NONE);
    s->listener.bare_newline = BARE_NEWLINE_REJECT;
    fake_client_sends(s, "EHLO client.example\r\nMAIL FROM:<>\r\n");
    fake_client_output(s);
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "220 b\r\n");
    CHECK_STR(fake_backend_output(s), "EHLO client.example\r\n");
    fake_backend_sends(s, "250 b\r\n");
    fake_client_sends(s, "RCPT TO:<bob@example.test>\r\nDATA\r\n");
    fake_backend_sends(s, "250 ok\r\n250 ok\r\n354 go\r\n");
    fake_client_output(s);
    fake_backend_output(s);
    fake_client_sends(s, "a\n.\nMAIL FROM:<x@y>\r\n.\r\nNOOP\r\n");
    CHECK(s->backend_closed);
    CHECK_STR(fake_client_output(s), "550 5.5.2 Error: bare <LF> received\r\n250 2.0.0 Ok\r\n");
    CHECK(!has(fake_backend_output(s), ".\r\n"));
    fake_session_free(s);

    s = mx_session(IDENT_NONE);
    fake_client_sends(s, "EHLO client.example\r\nMAIL FROM:<>\r\n");
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "220 b\r\n");
    fake_backend_sends(s, "250 b\r\n");
    fake_client_sends(s, "RCPT TO:<bob@example.test>\r\nDATA\r\n");
    fake_backend_sends(s, "250 ok\r\n250 ok\r\n354 go\r\n");
    fake_client_output(s);
    fake_client_sends(s, "partial body\r\n");
    fake_backend_event(s, BACKEND_EOF);
    CHECK(has(fake_client_output(s), "451 4.4.0"));
    CHECK(s->closed);
    fake_session_free(s);
}

static void
test_submission_auth(void)
{
    struct session *s =
        fake_session_new(&smtp_protocol, LPROTO_SUBMISSION, LTLS_IMPLICIT, IDENT_XCLIENT);
    fake_start(s);
    fake_client_sends(s, "EHLO client.example\r\nSTARTTLS\r\n");
    CHECK(has(fake_client_output(s), "502 5.5.1"));
    fake_client_sends(s, "AUTH LOGIN\r\n");
    CHECK_STR(fake_client_output(s), "334 VXNlcm5hbWU6\r\n");
    fake_client_sends(s, "*\r\n");
    CHECK(has(fake_client_output(s), "501 5.7.0"));
    /* alice@example.test / secret */
    fake_client_sends(s, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\nMAIL FROM:<a@b>\r\n");
    handoff(s, NULL);
    fake_backend_sends(s, "250-b\r\n250 AUTH PLAIN\r\n");
    CHECK_STR(fake_backend_output(s), "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n");
    fake_backend_sends(s, "535 5.7.8 no\r\n");
    const char *o = fake_client_output(s);
    CHECK(has(o, "535 5.7.8 Authentication credentials invalid\r\n"));
    CHECK(has(o, "530 5.7.0")); /* the pipelined MAIL, answered after the AUTH */
    CHECK(s->backend_closed);
    s->backend_connect_requested = false;
    fake_client_sends(s, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n");
    handoff(s, NULL);
    fake_backend_sends(s, "250-b\r\n250 AUTH PLAIN\r\n");
    fake_backend_output(s);
    fake_backend_sends(s, "235 2.7.0 ok\r\n");
    CHECK_STR(fake_client_output(s), "235 2.7.0 Authentication successful\r\n");
    CHECK_STR(s->user, "alice@example.test");
    fake_client_sends(s, "MAIL FROM:<mallory@example.test>\r\n");
    CHECK(has(fake_client_output(s), "553 5.7.1"));
    fake_client_sends(s, "MAIL FROM:<Alice@example.test> SIZE=99999999999\r\n");
    CHECK(has(fake_client_output(s), "552 5.3.4"));
    fake_client_sends(s, "MAIL FROM:<alice@example.test>\r\nRCPT TO:<x@far.example>\r\n");
    CHECK_STR(fake_backend_output(s),
              "MAIL FROM:<alice@example.test>\r\nRCPT TO:<x@far.example>\r\n");
    fake_client_sends(s, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n");
    CHECK_STR(fake_client_output(s), "");
    fake_backend_sends(s, "250 ok\r\n250 ok\r\n");
    CHECK_STR(fake_client_output(s),
              "250 ok\r\n250 ok\r\n503 5.5.1 Error: already authenticated\r\n");
    fake_client_sends(s, "EHLO again\r\n");
    CHECK_STR(fake_backend_output(s), "EHLO again\r\n");
    fake_backend_sends(s, "250-b\r\n250-XCLIENT ADDR\r\n250-AUTH PLAIN\r\n250 CHUNKING\r\n");
    o = fake_client_output(s);
    CHECK(has(o, "250-mx.moat.test") && !has(o, "XCLIENT") && !has(o, "AUTH") &&
          !has(o, "CHUNKING"));
    fake_session_free(s);
}

static void
test_handoff_failures(void)
{
    struct session *s = mx_session(IDENT_XCLIENT);
    fake_client_sends(s, "EHLO client.example\r\nMAIL FROM:<a@b>\r\n");
    fake_client_output(s);
    fake_backend_event(s, BACKEND_FAILED);
    CHECK(has(fake_client_output(s), "451 4.4.0"));
    CHECK(!s->closed);
    fake_client_sends(s, "NOOP\r\n");
    CHECK_STR(fake_client_output(s), "250 2.0.0 Ok\r\n");
    s->backend_connect_requested = false;
    fake_client_sends(s, "MAIL FROM:<a@b>\r\n");
    CHECK(s->backend_connect_requested);
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "220 b\r\n");
    fake_backend_sends(s, "250 b-without-xclient\r\n");
    CHECK(s->closed && has(fake_client_output(s), "421 4.3.0"));
    fake_session_free(s);

    s = mx_session(IDENT_XCLIENT);
    fake_client_sends(s, "EHLO client.example\r\nMAIL FROM:<a@b>\r\n");
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "garbage\r\n");
    CHECK(s->closed && has(fake_client_output(s), "421 4.3.0"));
    fake_session_free(s);
}

static void
test_greet_pause(void)
{
    /* enforce: a client talking before the greeting is refused and closed */
    struct session *s = fake_session_new(&smtp_protocol, LPROTO_SMTP, LTLS_STARTTLS, IDENT_XCLIENT);
    s->listener.greet_pause_ms = 1500;
    fake_start(s);
    CHECK_STR(fake_client_output(s), "");
    CHECK(s->timer_ms == 1500);
    fake_client_sends(s, "EHLO bot.example\r\n");
    CHECK(has(fake_client_output(s), "554 5.5.1 mx.moat.test Error: talking before the greeting"));
    CHECK(s->closed && s->close_reason == REASON_PROTOCOL_ERROR);
    fake_session_free(s);

    /* a patient client gets the greeting when the pause is over */
    s = fake_session_new(&smtp_protocol, LPROTO_SMTP, LTLS_STARTTLS, IDENT_XCLIENT);
    s->listener.greet_pause_ms = 1500;
    fake_start(s);
    fake_timer_fire(s);
    CHECK_STR(fake_client_output(s), "220 mx.moat.test ESMTP\r\n");
    fake_client_sends(s, "EHLO good.example\r\n");
    CHECK(has(fake_client_output(s), "250-mx.moat.test"));
    CHECK(!s->closed);
    fake_session_free(s);

    /* log mode: the early talker is served, after the greeting and in order */
    s = fake_session_new(&smtp_protocol, LPROTO_SMTP, LTLS_STARTTLS, IDENT_XCLIENT);
    s->listener.greet_pause_ms = 1500;
    s->listener.greet_mode = MODE_LOG;
    fake_start(s);
    fake_client_sends(s, "EHLO early.example\r\n");
    CHECK_STR(fake_client_output(s), "");
    fake_timer_fire(s);
    const char *o = fake_client_output(s);
    CHECK(strncmp(o, "220 mx.moat.test ESMTP\r\n250-mx.moat.test", 40) == 0);
    CHECK(!s->closed);
    fake_session_free(s);

    /* submission never pauses */
    s = fake_session_new(&smtp_protocol, LPROTO_SUBMISSION, LTLS_STARTTLS, IDENT_XCLIENT);
    s->listener.greet_pause_ms = 1500;
    fake_start(s);
    CHECK(has(fake_client_output(s), "220 "));
    fake_session_free(s);
}

static void
test_client_rates(void)
{
    struct session *s = mx_session(IDENT_XCLIENT);
    fake_client_sends(s, "EHLO client.example\r\n");
    (void)fake_client_output(s);
    s->refuse_messages = true;
    fake_client_sends(s, "MAIL FROM:<a@remote.example>\r\n");
    CHECK(has(fake_client_output(s), "450 4.7.1 Error: too many messages from your host"));
    CHECK(!s->backend_connect_requested);
    fake_session_free(s);
}

/* max_tls_handshakes reached: a temporary refusal, the session goes on in plaintext */
static void
test_starttls_busy(void)
{
    struct session *s =
        fake_session_new(&smtp_protocol, LPROTO_SUBMISSION, LTLS_STARTTLS, IDENT_XCLIENT);
    fake_start(s);
    fake_client_sends(s, "EHLO c\r\n");
    fake_client_output(s);
    s->tls_busy = true;
    fake_client_sends(s, "STARTTLS\r\n");
    CHECK_STR(fake_client_output(s), "454 4.7.0 TLS not available due to temporary reason\r\n");
    CHECK(!s->starttls_requested && !s->closed);
    s->tls_busy = false;
    fake_client_sends(s, "STARTTLS\r\n");
    CHECK_STR(fake_client_output(s), "220 2.0.0 Ready to start TLS\r\n");
    CHECK(s->starttls_requested);
    fake_session_free(s);
}

/* A backend 421 reaches the client and ends the session (no fresh leg at the next MAIL); backend
 * refusals of MAIL/RCPT count toward max_errors. */
static void
test_backend_421_and_refusals(void)
{
    struct session *s = mx_session(IDENT_NONE);
    fake_client_sends(s, "EHLO client.example\r\nMAIL FROM:<>\r\n");
    fake_client_output(s);
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "220 b\r\n");
    fake_backend_sends(s, "250 b\r\n");
    fake_client_sends(s, "RCPT TO:<a@example.test>\r\nRCPT TO:<bob@example.test>\r\n");
    fake_backend_output(s);
    fake_backend_sends(s, "250 ok\r\n550 5.1.1 unknown\r\n421 4.7.0 b Error: too many errors\r\n");
    CHECK(
        has(fake_client_output(s), "550 5.1.1 unknown\r\n421 4.7.0 b Error: too many errors\r\n"));
    CHECK(s->closed);
    fake_session_free(s);

    s = mx_session(IDENT_NONE);
    s->listener.limits.max_errors = 2;
    fake_client_sends(s, "EHLO client.example\r\nMAIL FROM:<>\r\n");
    fake_client_output(s);
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "220 b\r\n");
    fake_backend_sends(s, "250 b\r\n");
    fake_client_sends(s, "RCPT TO:<a@example.test>\r\n");
    fake_backend_sends(s, "250 ok\r\n550 5.1.1 unknown\r\n");
    CHECK(!s->closed);
    fake_client_sends(s, "RCPT TO:<c@example.test>\r\n");
    fake_backend_sends(s, "550 5.1.1 unknown\r\n");
    CHECK(has(fake_client_output(s),
              "550 5.1.1 unknown\r\n421 4.7.0 mx.moat.test Error: too many errors\r\n"));
    CHECK(s->closed && s->close_reason == REASON_TOO_MANY_ERRORS);
    fake_session_free(s);
}

int
main(void)
{
    test_greet_pause();
    test_client_rates();
    test_preauth();
    test_limits();
    test_starttls();
    test_starttls_busy();
    test_mx_relay();
    test_data_reject_and_backend_death();
    test_submission_auth();
    test_handoff_failures();
    test_backend_421_and_refusals();
    return test_finish("test_proto_smtp");
}
