/*
 * test_proto_smtp_dns.c: how the SMTP front applies the DNS checks, through the fake core: MAIL
 * waits (unanswered, input paused) while the checks run, a refusal keeps the backend closed and
 * keeps later pipelined commands in order, the verified name goes out as XCLIENT NAME=, the
 * HELO reaches the checks, the Received-SPF header precedes the message content, and the final
 * dot waits for the URI list verdict (never sent when the message is refused).
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
mx_session(void)
{
    struct session *s = fake_session_new(&smtp_protocol, LPROTO_SMTP, LTLS_STARTTLS, IDENT_XCLIENT);
    fake_start(s);
    fake_client_output(s);
    fake_client_sends(s, "EHLO client.example\r\n");
    fake_client_output(s);
    return s;
}

static void
test_refused_client(void)
{
    struct session *s = mx_session();
    CHECK_STR(s->dns_helo, "client.example");
    s->dns_verdict = DNS_VERDICT_PENDING;
    fake_client_sends(s, "MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\nNOOP\r\n");
    CHECK_STR(fake_client_output(s), "");
    CHECK(s->input_paused && !s->backend_connect_requested);
    s->dns_verdict = DNS_VERDICT_REFUSE;
    s->dns_reply = "554 5.7.1 Service unavailable; client [192.0.2.7] blocked using bl.test";
    fake_dns_done(s);
    CHECK_STR(fake_client_output(s),
              "554 5.7.1 Service unavailable; client [192.0.2.7] blocked using bl.test\r\n"
              "503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n");
    CHECK(!s->backend_connect_requested);
    CHECK(s->errors >= 1);
    fake_session_free(s);
}

static void
test_verified_name_and_spf_header(void)
{
    struct session *s = mx_session();
    s->client_name = "good.example";
    s->spf_verdict = DNS_VERDICT_PENDING;
    fake_client_sends(s, "MAIL FROM:<a@remote.example>\r\n");
    CHECK(!s->backend_connect_requested);
    CHECK_STR(s->spf_sender, "a@remote.example");
    s->spf_verdict = DNS_VERDICT_PASS;
    s->spf_header = "Received-SPF: pass (test) client-ip=192.0.2.7;\r\n";
    fake_dns_done(s);
    CHECK(s->backend_connect_requested);
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "220 backend ESMTP\r\n");
    fake_backend_output(s);
    fake_backend_sends(s, "250-backend\r\n250 XCLIENT NAME ADDR PORT\r\n");
    CHECK(has(fake_backend_output(s), " NAME=good.example "));
    fake_backend_sends(s, "220 backend ESMTP\r\n");
    fake_backend_output(s);
    fake_backend_sends(s, "250 backend\r\n");
    CHECK_STR(fake_backend_output(s), "MAIL FROM:<a@remote.example>\r\n");
    fake_client_sends(s, "RCPT TO:<bob@example.test>\r\nDATA\r\n");
    fake_backend_sends(s, "250 ok\r\n250 ok\r\n354 go\r\n");
    fake_client_sends(s, "Subject: x\r\n\r\nbody\r\n.\r\n");
    const char *b = fake_backend_output(s);
    CHECK(has(b, "DATA\r\nReceived-SPF: pass (test) client-ip=192.0.2.7;\r\nSubject: x\r\n"));
    fake_session_free(s);
}

static void
test_spf_refusal(void)
{
    struct session *s = mx_session();
    s->spf_verdict = DNS_VERDICT_REFUSE;
    s->spf_reply = "550 5.7.23 SPF: no";
    fake_client_sends(s, "MAIL FROM:<a@fail.example>\r\n");
    CHECK_STR(fake_client_output(s), "550 5.7.23 SPF: no\r\n");
    CHECK(!s->backend_connect_requested);
    fake_session_free(s);
}

/* An MX session in the middle of a message: hand-off done, MAIL/RCPT/DATA accepted, 354. */
static struct session *
in_data(void)
{
    struct session *s = mx_session();
    s->conf.dns.uribl_timeout_ms = 5000;
    fake_client_sends(s, "MAIL FROM:<a@remote.example>\r\n");
    fake_backend_event(s, BACKEND_CONNECTED);
    fake_backend_sends(s, "220 backend ESMTP\r\n");
    fake_backend_sends(s, "250-backend\r\n250 XCLIENT NAME ADDR PORT\r\n");
    fake_backend_sends(s, "220 backend ESMTP\r\n");
    fake_backend_sends(s, "250 backend\r\n");
    fake_client_sends(s, "RCPT TO:<bob@example.test>\r\nDATA\r\n");
    fake_backend_sends(s, "250 ok\r\n250 ok\r\n354 go\r\n");
    fake_client_output(s);
    fake_backend_output(s);
    return s;
}

static void
test_uribl_waits_then_delivers(void)
{
    struct session *s = in_data();
    CHECK(s->uribl_starts == 1);
    s->uribl_verdict = DNS_VERDICT_PENDING;
    fake_client_sends(s, "Subject: x\r\n\r\nhttp://a.example/\r\n.\r\nQUIT\r\n");
    CHECK(s->uribl_fed == strlen("Subject: x\r\n\r\nhttp://a.example/\r\n"));
    /* the content went on, the final dot waits, and so does the pipelined QUIT */
    CHECK_STR(fake_backend_output(s), "Subject: x\r\n\r\nhttp://a.example/\r\n");
    CHECK_STR(fake_client_output(s), "");
    CHECK(s->input_paused && s->timer_ms == 5000);
    s->uribl_verdict = DNS_VERDICT_PASS;
    fake_dns_done(s);
    CHECK_STR(fake_backend_output(s), ".\r\n");
    CHECK(s->timer_ms == 0);
    fake_backend_sends(s, "250 2.0.0 Ok: queued as ABC\r\n");
    CHECK_STR(fake_client_output(s), "250 2.0.0 Ok: queued as ABC\r\n221 2.0.0 Bye\r\n");
    fake_session_free(s);
}

static void
test_uribl_timeout_delivers(void)
{
    struct session *s = in_data();
    s->uribl_verdict = DNS_VERDICT_PENDING;
    fake_client_sends(s, "body\r\n.\r\n");
    CHECK_STR(fake_backend_output(s), "body\r\n");
    fake_timer_fire(s);
    CHECK(s->uribl_gave_up);
    CHECK_STR(fake_backend_output(s), ".\r\n");
    fake_session_free(s);
}

static void
test_uribl_refusal_never_sends_the_dot(void)
{
    struct session *s = in_data();
    s->uribl_verdict = DNS_VERDICT_PENDING;
    fake_client_sends(s, "http://spam.example/\r\n.\r\nMAIL FROM:<b@remote.example>\r\n");
    s->uribl_verdict = DNS_VERDICT_REFUSE;
    s->uribl_reply =
        "554 5.7.1 Message content rejected: it links to spam.example, listed by u.test";
    s->backend_connect_requested = false;
    fake_dns_done(s);
    CHECK_STR(fake_backend_output(s), "http://spam.example/\r\n");
    CHECK(s->backend_closed);
    /* the refusal, then the next transaction opens a new backend leg */
    CHECK(has(fake_client_output(s), "554 5.7.1 Message content rejected: it links to "
                                     "spam.example, listed by u.test\r\n"));
    CHECK(s->backend_connect_requested);
    /* an immediate refusal (answers already in) is the same */
    fake_session_free(s);
    s = in_data();
    s->uribl_verdict = DNS_VERDICT_REFUSE;
    s->uribl_reply = "554 5.7.1 no";
    fake_client_sends(s, "x\r\n.\r\n");
    CHECK_STR(fake_backend_output(s), "x\r\n");
    CHECK_STR(fake_client_output(s), "554 5.7.1 no\r\n");
    CHECK(s->backend_closed && !s->input_paused);
    fake_session_free(s);
}

int
main(void)
{
    test_uribl_waits_then_delivers();
    test_uribl_timeout_delivers();
    test_uribl_refusal_never_sends_the_dot();
    test_refused_client();
    test_verified_name_and_spf_header();
    test_spf_refusal();
    return test_finish("test_proto_smtp_dns");
}
