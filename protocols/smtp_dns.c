/*
 * smtp_dns.c: where the SMTP front applies the DNS checks. Before a MAIL goes on, the client
 * checks (reverse DNS, DNS lists, HELO) and then SPF of the sender must have passed: while they
 * run, the MAIL line stays unconsumed and input is paused; a refusal is answered in order with
 * the pipelined replies. After 354 the Received-SPF header goes to the backend first, and the
 * content's URLs are looked up in the URI lists; the final dot waits for their verdict.
 */
#include <string.h>

#include "smtp_int.h"

bool
smtp_dns_gate(struct session *s, struct smtp_session *st, const struct smtp_path *path,
              bool *wait_out)
{
    const char *reply = NULL, *header = NULL;
    *wait_out = false;
    enum dns_verdict v = session_dns_verdict(s, &reply);
    if (v == DNS_VERDICT_PASS)
        v = session_spf_verdict(s, path->addr, path->addr_len, st->helo, &reply, &header);
    st->spf_header = header;
    switch (v) {
    case DNS_VERDICT_PASS:
        return false;
    case DNS_VERDICT_PENDING:
        smtp_pause(s);
        *wait_out = true;
        return true;
    case DNS_VERDICT_REFUSE:
        break;
    }
    st->spf_header = NULL;
    if (!smtp_fifo_empty(st)) { /* the refusal must not overtake replies still owed */
        smtp_pause(s);
        *wait_out = true;
        return true;
    }
    session_replyf(s, "%s\r\n", reply);
    if (session_count_error(s))
        smtp_close_421(s, "4.7.0", "Error: too many errors", REASON_TOO_MANY_ERRORS);
    return true;
}

void
smtp_on_dns_done(struct session *s)
{
    if (smtp_st(s)->state == SMTP_DATA_CHECK) {
        smtp_dns_data_end(s, false);
        return;
    }
    smtp_resume(s);
}

void
smtp_dns_data_start(struct session *s, struct smtp_session *st)
{
    if (st->spf_header != NULL)
        session_backend_send(s, st->spf_header, strlen(st->spf_header));
    session_uribl_start(s);
}

void
smtp_dns_data_end(struct session *s, bool give_up)
{
    struct smtp_session *st = smtp_st(s);
    const char *reply = NULL;
    bool waited = st->state == SMTP_DATA_CHECK;
    switch (session_uribl_verdict(s, give_up, &reply)) {
    case DNS_VERDICT_PENDING:
        if (!waited) {
            smtp_enter_state(s, SMTP_DATA_CHECK);
            smtp_pause(s); /* what the client sent after the dot waits for the verdict */
            session_timer_start(s, session_config(s)->dns.uribl_timeout_ms);
        }
        return;
    case DNS_VERDICT_PASS:
        smtp_data_deliver(s);
        break;
    case DNS_VERDICT_REFUSE:
        smtp_data_refuse(s, reply);
        break;
    }
    if (waited) {
        session_timer_stop(s);
        smtp_resume(s);
    }
}
