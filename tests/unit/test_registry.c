/*
 * test_registry.c: the protocol registry and the data the core reads from a listener's table:
 * each listener protocol gets its table at load, and the refusals written at accept come from
 * that table byte for byte as each protocol words them.
 */
#include <stdio.h>

#include "admission.h"
#include "listener.h"
#include "protocols.h"
#include "test.h"

static void
test_bind(void)
{
    CHECK(protocol_for(LPROTO_SMTP) == &smtp_protocol);
    CHECK(protocol_for(LPROTO_SUBMISSION) == &smtp_protocol);
    CHECK(protocol_for(LPROTO_IMAP) == &imap_protocol);
    CHECK(protocol_for(LPROTO_POP3) == &pop3_protocol);
    struct config_listener pop3 = {.proto = LPROTO_POP3};
    struct config_listener imap = {.proto = LPROTO_IMAP, .next = &pop3};
    struct config c = {.listeners = &imap};
    protocols_bind(&c);
    CHECK(imap.protocol == &imap_protocol);
    CHECK(pop3.protocol == &pop3_protocol);
    CHECK_STR(smtp_protocol.alpn, "smtp");
    CHECK_STR(imap_protocol.alpn, "imap");
    CHECK_STR(pop3_protocol.alpn, "pop3");
    CHECK_STR(smtp_protocol.sasl_service, "smtp");
    CHECK_STR(imap_protocol.sasl_service, "imap");
    CHECK_STR(pop3_protocol.sasl_service, "pop");
}

static void
check_refusal(enum listener_proto p, enum listener_tls tls, enum admission_verdict v,
              const char *want)
{
    struct config c = {.hostname = "mx.moat.test"};
    struct config_listener l = {.proto = p, .tls = tls, .protocol = protocol_for(p)};
    char line[256];
    int n = listener_refusal(line, sizeof(line), &c, &l, v);
    if (want == NULL) {
        CHECK(n == 0);
        return;
    }
    CHECK(n > 0 && (size_t)n < sizeof(line));
    CHECK_STR(n > 0 ? line : "", want);
}

static void
test_refusals(void)
{
    check_refusal(LPROTO_SMTP, LTLS_STARTTLS, ADMIT_PER_IP,
                  "421 4.7.0 mx.moat.test Too many connections from your host\r\n");
    check_refusal(LPROTO_SUBMISSION, LTLS_STARTTLS, ADMIT_RATE,
                  "421 4.7.0 mx.moat.test Too many connections from your host\r\n");
    check_refusal(LPROTO_SMTP, LTLS_NONE, ADMIT_BANNED,
                  "421 4.7.0 mx.moat.test Too many failures from your host, try again later\r\n");
    check_refusal(LPROTO_SMTP, LTLS_NONE, ADMIT_MAX_SESSIONS,
                  "421 4.7.0 mx.moat.test Too many connections, try again later\r\n");
    check_refusal(LPROTO_SMTP, LTLS_NONE, ADMIT_DENIED, "554 5.7.1 mx.moat.test Access denied\r\n");
    check_refusal(LPROTO_IMAP, LTLS_STARTTLS, ADMIT_PER_IP,
                  "* BYE [UNAVAILABLE] Too many connections from your host\r\n");
    check_refusal(LPROTO_IMAP, LTLS_STARTTLS, ADMIT_TABLE_FULL,
                  "* BYE [UNAVAILABLE] Too many connections, try again later\r\n");
    check_refusal(LPROTO_IMAP, LTLS_STARTTLS, ADMIT_DENIED, "* BYE Access denied\r\n");
    check_refusal(LPROTO_POP3, LTLS_STARTTLS, ADMIT_TLS_HANDSHAKES,
                  "-ERR [SYS/TEMP] Too many connections, try again later\r\n");
    check_refusal(LPROTO_POP3, LTLS_NONE, ADMIT_BANNED,
                  "-ERR [SYS/TEMP] Too many failures from your host, try again later\r\n");
    check_refusal(LPROTO_POP3, LTLS_NONE, ADMIT_DENIED, "-ERR Access denied\r\n");
    /* implicit TLS: nothing can be said before the handshake, the connection just closes */
    check_refusal(LPROTO_SMTP, LTLS_IMPLICIT, ADMIT_PER_IP, NULL);
    check_refusal(LPROTO_IMAP, LTLS_IMPLICIT, ADMIT_DENIED, NULL);
    check_refusal(LPROTO_POP3, LTLS_IMPLICIT, ADMIT_MAX_SESSIONS, NULL);
}

int
main(void)
{
    test_bind();
    test_refusals();
    return test_finish("test_registry");
}
