/*
 * dnscheck.h: the DNS checks of one session (core side): forward-confirmed reverse DNS, DNS
 * block/allow lists, HELO and SPF, started at accept and run on the worker's resolver while the
 * protocol talks. The protocol sees them through protocol.h (session_dns_verdict and friends);
 * session_events.c only starts, cancels, logs and frees them.
 */
#ifndef MOAT_DNSCHECK_H
#define MOAT_DNSCHECK_H

#include "log.h"

struct session;
struct dnscheck;

/* At accept: the checks this listener's policy asks for; NULL when there are none. */
struct dnscheck *dnscheck_start(struct session *s);
/* The session is finishing: no callback may reach it any more. */
void dnscheck_cancel(struct dnscheck *d);
/* Fields for the session's closing line (rdns=, dnsbl_score=, helo=, spf=). */
void dnscheck_log_close(const struct dnscheck *d, struct log_line *l);
void dnscheck_free(struct dnscheck *d);

#endif
