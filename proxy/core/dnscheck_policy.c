/*
 * dnscheck_policy.c: the HELO check, the SPF driver (spf.c re-run over a per-evaluation answer
 * store filled from the worker's resolver) and the verdicts behind the protocol services in
 * protocol.h: what is refused, with which reply, what is only logged (warn) or logged as
 * "would refuse" (dry-run), and the Received-SPF header. Replies and headers never carry a byte a
 * peer chose unless it was validated or made safe first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnscheck_int.h"
#include "log.h"

enum finding { F_DNSBL = 0, F_FCRDNS, F_HELO, F_SPF };
static const char *const finding_names[] = {"dnsbl", "fcrdns", "helo", "spf"};

/* --- HELO --- */

static void
helo_done(struct dnscheck *d, enum check_state st, const char *why)
{
    d->helo = st;
    d->helo_why = why;
}

static void
on_helo_answer(struct dns_waiter *w, const struct dns_answer *a)
{
    struct dnscheck *d = dc_of(w);
    if (a->status == DNS_NONE && !d->helo_aaaa) {
        d->helo_aaaa = true;
        dns_lookup(d->r, DNS_T_AAAA, d->helo_name, &d->helo_w.w, on_helo_answer);
        return;
    }
    switch (a->status) {
    case DNS_OK:
        helo_done(d, CHK_OK, NULL);
        break;
    case DNS_NONE:
        helo_done(d, CHK_BAD, "unresolved");
        break;
    case DNS_TEMP:
        helo_done(d, CHK_TEMP, "temp");
        break;
    }
    dc_progress(d);
}

void
session_dns_helo(struct session *s, const char *helo)
{
    struct dnscheck *d = s->dns;
    if (d == NULL || d->cd->helo_check == DNS_POLICY_OFF)
        return;
    dns_cancel(&d->helo_w.w);
    d->logged &= ~(1u << F_HELO);
    size_t n = strlen(helo);
    struct dns_addr lit, local;
    bool have_local =
        dns_addr_from_sockaddr((const struct sockaddr *)&s->local, &local) == 0 && s->local_len;
    switch (dnsname_helo_classify(helo, n, &lit)) {
    case HELO_INVALID:
        helo_done(d, CHK_BAD, "invalid");
        return;
    case HELO_BARE_NAME:
        helo_done(d, CHK_BAD, "not_fqdn");
        return;
    case HELO_LITERAL:
        helo_done(d, have_local && dns_addr_equal(&lit, &local) ? CHK_BAD : CHK_OK,
                  have_local && dns_addr_equal(&lit, &local) ? "ours" : NULL);
        return;
    case HELO_NAME:
        break;
    }
    if (dnsname_equal(helo, s->conf->hostname)) {
        helo_done(d, CHK_BAD, "ours");
        return;
    }
    helo_done(d, CHK_OK, NULL);
    if (!d->cd->helo_resolve || n >= sizeof(d->helo_name))
        return;
    memcpy(d->helo_name, helo, n + 1);
    d->helo = CHK_PENDING;
    d->helo_aaaa = false;
    dc_waiter_init(&d->helo_w, d, 0);
    dns_lookup(d->r, DNS_T_A, d->helo_name, &d->helo_w.w, on_helo_answer);
}

/* --- client verdict --- */

static const char *
helo_reply(const struct dnscheck *d)
{
    if (d->helo == CHK_TEMP)
        return "450 4.7.1 Helo command rejected: Host not found";
    if (d->helo_why != NULL && strcmp(d->helo_why, "ours") == 0)
        return "550 5.7.1 Helo command rejected: You are not me";
    if (d->helo_why != NULL && strcmp(d->helo_why, "unresolved") == 0)
        return "550 5.7.1 Helo command rejected: Host not found";
    if (d->helo_why != NULL && strcmp(d->helo_why, "not_fqdn") == 0)
        return "504 5.5.2 Helo command rejected: need fully-qualified hostname";
    return "501 5.5.2 Helo command rejected: Invalid name";
}

/* The first finding of check f, or NULL: its reply goes to d->reply. */
static const char *
finding(struct dnscheck *d, enum finding f, enum dns_policy *pol_out)
{
    const struct config_dns *cd = d->cd;
    const char *ip = d->s->client_addr;
    switch (f) {
    case F_DNSBL:
        *pol_out = cd->dnsbl_action;
        if (d->lists == NULL || d->bl_verdict != DNSBL_BLOCK)
            return NULL;
        snprintf(d->reply, sizeof(d->reply),
                 "554 5.7.1 Service unavailable; client [%s] blocked using %s", ip, d->score.top);
        return d->reply;
    case F_FCRDNS:
        *pol_out = cd->fcrdns;
        if (d->rdns != CHK_NONE && d->rdns != CHK_TEMP)
            return NULL;
        snprintf(d->reply, sizeof(d->reply), "%s Client host rejected: cannot find your %s, [%s]",
                 d->rdns == CHK_TEMP ? "450 4.7.25" : "550 5.7.25",
                 d->nnames > 0 ? "hostname" : "reverse hostname", ip);
        return d->reply;
    case F_HELO:
        *pol_out = cd->helo_check;
        if (d->helo != CHK_BAD && d->helo != CHK_TEMP)
            return NULL;
        snprintf(d->reply, sizeof(d->reply), "%s", helo_reply(d));
        return d->reply;
    case F_SPF:
        *pol_out = cd->spf;
        if (d->spf != CHK_OK || d->spf_out.result != SPF_FAIL)
            return NULL;
        snprintf(d->reply, sizeof(d->reply),
                 "550 5.7.23 SPF: the sender's domain does not designate [%s] as a permitted "
                 "sender",
                 ip);
        return d->reply;
    }
    return NULL;
}

/* Log a finding once; true when it is to be enforced now. */
static bool
finding_act(struct dnscheck *d, enum finding f, enum dns_policy pol, const char *reply)
{
    bool enforce = d->enforce && pol == DNS_POLICY_REJECT;
    if ((d->logged & (1u << f)) == 0 && pol != DNS_POLICY_OFF) {
        d->logged |= 1u << f;
        /* EV_DNSBL_REFUSED is also what /metrics counts (events.h) */
        enum log_event ev = !enforce ? (pol == DNS_POLICY_WARN ? EV_DNS_WARN : EV_DNS_WOULD_REFUSE)
                            : f == F_DNSBL ? EV_DNSBL_REFUSED
                                           : EV_DNS_REFUSE;
        session_log(d->s, enforce ? LOG_INFO : LOG_WARN, ev, "check=%s reply=\"%.3s\"",
                    finding_names[f], reply);
    }
    return enforce;
}

enum dns_verdict
session_dns_verdict(struct session *s, const char **reply_out)
{
    struct dnscheck *d = s->dns;
    *reply_out = NULL;
    if (d == NULL)
        return DNS_VERDICT_PASS;
    if (dc_client_pending(d)) {
        if (!d->enforce)
            return DNS_VERDICT_PASS;
        d->notify = true;
        return DNS_VERDICT_PENDING;
    }
    if (d->lists != NULL && d->bl_verdict == DNSBL_ALLOWLIST)
        return DNS_VERDICT_PASS; /* allowlisted: the other checks are skipped */
    static const enum finding order[] = {F_DNSBL, F_FCRDNS, F_HELO};
    for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
        enum dns_policy pol;
        const char *reply = finding(d, order[i], &pol);
        if (reply != NULL && finding_act(d, order[i], pol, reply)) {
            *reply_out = reply;
            return DNS_VERDICT_REFUSE;
        }
    }
    return DNS_VERDICT_PASS;
}

const char *
session_client_name(struct session *s)
{
    const struct dnscheck *d = s->dns;
    if (d == NULL)
        return "[UNAVAILABLE]";
    switch (d->rdns) {
    case CHK_OK:
        return d->name;
    case CHK_OFF:
    case CHK_NONE:
    case CHK_BAD:
        return "[UNAVAILABLE]";
    case CHK_PENDING:
    case CHK_TEMP:
        break;
    }
    return "[TEMPUNAVAIL]";
}

enum dns_verdict
session_spf_verdict(struct session *s, const char *sender, size_t n, const char *helo,
                    const char **reply_out, const char **header_out)
{
    struct dnscheck *d = s->dns;
    *reply_out = NULL;
    *header_out = NULL;
    if (d == NULL || d->cd->spf == DNS_POLICY_OFF || s->listener->proto != LPROTO_SMTP ||
        d->client.family == 0)
        return DNS_VERDICT_PASS;
    if (d->lists != NULL && d->bl_pending == 0 && d->bl_verdict == DNSBL_ALLOWLIST)
        return DNS_VERDICT_PASS;
    if (d->spf == CHK_OFF || strlen(d->spf_sender) != n || memcmp(d->spf_sender, sender, n) != 0)
        dc_spf_start(d, sender, n, helo);
    if (d->spf == CHK_PENDING) {
        d->notify = true;
        return DNS_VERDICT_PENDING;
    }
    *header_out = d->spf_header[0] ? d->spf_header : NULL;
    enum dns_policy pol;
    const char *reply = finding(d, F_SPF, &pol);
    if (reply != NULL && finding_act(d, F_SPF, pol, reply)) {
        *reply_out = reply;
        return DNS_VERDICT_REFUSE;
    }
    return DNS_VERDICT_PASS;
}
