/*
 * dnscheck.c: one session's DNS checks on the worker's resolver (dns.c): PTR then A/AAAA of each
 * valid name (forward confirmation), one A query per DNS list, the HELO name, and SPF through
 * spf.c's re-runnable evaluator with a per-evaluation answer store. It owns the verdicts and
 * the replies for the protocol services in protocol.h. Every callback goes through a waiter the
 * session cancels when it finishes, so a closed session is never touched; the protocol hears
 * "done" (on_dns_done) only from the loop, never inside one of its own calls.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnscheck.h"
#include "dnscheck_int.h"
#include "session_env.h"

bool
dc_client_pending(const struct dnscheck *d)
{
    return d->rdns == CHK_PENDING || d->bl_pending > 0 || d->helo == CHK_PENDING;
}

/* Tell the protocol, if it waits, that something it waited for is done. */
void
dc_progress(struct dnscheck *d)
{
    struct session *s = d->s;
    if (!d->notify || s->closing || dc_client_pending(d) || d->spf == CHK_PENDING)
        return;
    d->notify = false;
    if (s->proto->on_dns_done != NULL)
        s->proto->on_dns_done(s);
}

/* --- reverse DNS --- */

static void
rdns_finish(struct dnscheck *d)
{
    if (d->name[0] != '\0')
        d->rdns = CHK_OK;
    else
        d->rdns = d->fwd_temp ? CHK_TEMP : CHK_NONE;
}

static void
on_forward(struct dns_waiter *w, const struct dns_answer *a)
{
    struct dnscheck *d = dc_of(w);
    unsigned i = container_of(w, struct check_waiter, w)->index;
    d->fwd_pending--;
    if (a->status == DNS_TEMP)
        d->fwd_temp = true;
    for (size_t k = 0; a->status == DNS_OK && k < a->n && d->name[0] == '\0'; k++)
        if (dns_addr_equal(&a->addrs[k], &d->client))
            snprintf(d->name, sizeof(d->name), "%s", d->names[i]);
    if (d->fwd_pending == 0) {
        rdns_finish(d);
        dc_progress(d);
    }
}

static void
on_ptr(struct dns_waiter *w, const struct dns_answer *a)
{
    struct dnscheck *d = dc_of(w);
    d->rdns = a->status == DNS_TEMP ? CHK_TEMP : CHK_NONE;
    if (a->bad_reply)
        d->bad_name = true;
    for (size_t i = 0; a->status == DNS_OK && i < a->n && d->nnames < RDNS_MAX_NAMES; i++) {
        const char *n = a->strs[i];
        if (!dnsname_host_valid(n, strlen(n))) {
            d->bad_name = true; /* never used, never logged raw */
            continue;
        }
        snprintf(d->names[d->nnames++], sizeof(d->names[0]), "%s", n);
    }
    if (d->bad_name)
        session_log(d->s, LOG_WARN, EV_RDNS_BAD_NAME, "client=%s", d->s->client_addr);
    if (d->nnames == 0) {
        dc_progress(d);
        return;
    }
    d->rdns = CHK_PENDING;
    d->fwd_pending = d->nnames;
    enum dns_type t = d->client.family == AF_INET ? DNS_T_A : DNS_T_AAAA;
    for (unsigned i = 0; i < d->nnames; i++) {
        dc_waiter_init(&d->fwd_w[i], d, i);
        dns_lookup(d->r, t, d->names[i], &d->fwd_w[i].w, on_forward);
    }
}

/* --- DNS lists --- */

static void
on_list(struct dns_waiter *w, const struct dns_answer *a)
{
    struct dnscheck *d = dc_of(w);
    const struct dnsbl_zone *z = &d->lists->zones[container_of(w, struct check_waiter, w)->index];
    enum dnsbl_answer ans = dc_list_answer(z, a);
    if (ans == DNSBL_ERROR_CODE)
        session_log(d->s, LOG_WARN, EV_DNSBL_ERROR_CODE, "zone=%s client=%s", z->name,
                    d->s->client_addr);
    else if (ans != DNSBL_NOT_LISTED)
        session_log(d->s, LOG_INFO, EV_DNSBL, "zone=%s answer=%s weight=%d", z->name,
                    dnsbl_answer_name(ans), z->weight);
    dnsbl_score_add(&d->score, z, ans);
    if (--d->bl_pending == 0) {
        d->bl_verdict =
            dnsbl_verdict(&d->score, (int)d->cd->dnsbl_threshold, d->cd->dnsbl_allowlist_threshold);
        dc_progress(d);
    }
}

/* --- start, cancel, free --- */

static bool
checks_mode(const struct session *s, bool *enforce_out)
{
    enum dns_checks_mode m = s->listener->dns_checks;
    if (m == DNS_CHECKS_AUTO)
        m = s->listener->proto == LPROTO_SMTP ? DNS_CHECKS_ENFORCE : DNS_CHECKS_LOG;
    *enforce_out = m == DNS_CHECKS_ENFORCE;
    return m != DNS_CHECKS_OFF;
}

struct dnscheck *
dnscheck_start(struct session *s)
{
    const struct config_dns *cd = &s->conf->dns;
    bool enforce;
    bool any = cd->fcrdns != DNS_POLICY_OFF || cd->helo_check != DNS_POLICY_OFF ||
               cd->dnsbl_list != NULL || cd->spf != DNS_POLICY_OFF ||
               (cd->uribl_list != NULL && s->listener->proto == LPROTO_SMTP);
    if (!any || !checks_mode(s, &enforce))
        return NULL;
    struct dnscheck *d = xcalloc(1, sizeof(*d));
    d->s = s;
    d->cd = cd;
    d->enforce = enforce;
    d->r = dns_resolver_get(s->env->loop, &s->env->resolver, &s->conf->dns);
    if (d->r == NULL) { /* no resolver (logged): this session goes without DNS checks */
        free(d);
        return NULL;
    }
    d->uribl = uribl_new(d);
    if (dns_addr_from_sockaddr((const struct sockaddr *)&s->peer, &d->client) != 0)
        return d; /* not an IP client: nothing to check */
    char q[DNSNAME_MAX + 2];
    if (cd->fcrdns != DNS_POLICY_OFF && dnsname_reverse(&d->client, NULL, q, sizeof(q)) > 0) {
        d->rdns = CHK_PENDING;
        dc_waiter_init(&d->ptr_w, d, 0);
        dns_lookup(d->r, DNS_T_PTR, q, &d->ptr_w.w, on_ptr);
    }
    d->lists = cd->dnsbl_list;
    for (size_t i = 0; d->lists != NULL && i < d->lists->n; i++) {
        if (dnsname_reverse(&d->client, d->lists->zones[i].name, q, sizeof(q)) < 0)
            continue;
        dc_waiter_init(&d->bl_w[i], d, (unsigned)i);
        d->bl_pending++;
        dns_lookup(d->r, DNS_T_A, q, &d->bl_w[i].w, on_list);
    }
    return d;
}

void
dc_spf_clear(struct dnscheck *d)
{
    for (size_t i = 0; i < d->nstore; i++) {
        struct spf_stored *e = &d->store[i];
        for (size_t k = 0; e->strs != NULL && k < e->n; k++)
            free(e->strs[k]);
        free(e->strs);
        free(e->addrs);
        free(e->name);
    }
    d->nstore = 0;
    d->spf_bytes = 0;
    d->spf_too_big = false;
    d->spf_answer_cut = false;
}

void
dnscheck_cancel(struct dnscheck *d)
{
    if (d == NULL)
        return;
    d->notify = false;
    dns_cancel(&d->ptr_w.w);
    for (size_t i = 0; i < RDNS_MAX_NAMES; i++)
        dns_cancel(&d->fwd_w[i].w);
    for (size_t i = 0; i < DNSBL_MAX_ZONES; i++)
        dns_cancel(&d->bl_w[i].w);
    dns_cancel(&d->helo_w.w);
    dns_cancel(&d->spf_w.w);
    uribl_cancel(d->uribl);
}

void
dnscheck_free(struct dnscheck *d)
{
    if (d == NULL)
        return;
    dnscheck_cancel(d);
    dc_spf_clear(d);
    uribl_free(d->uribl);
    if (d->r != NULL)
        dns_resolver_put(d->r);
    free(d);
}

const char *
dc_state_name(enum check_state c)
{
    switch (c) {
    case CHK_OFF:
        return "off";
    case CHK_PENDING:
        return "pending";
    case CHK_OK:
        return "ok";
    case CHK_NONE:
        return "none";
    case CHK_TEMP:
        return "temp";
    case CHK_BAD:
        return "bad";
    }
    return "?";
}

void
dnscheck_log_close(const struct dnscheck *d, struct log_line *l)
{
    if (d == NULL)
        return;
    if (d->rdns != CHK_OFF)
        log_kv(l, "rdns", "%s", dc_state_name(d->rdns));
    if (d->name[0] != '\0')
        log_kv_str(l, "rdns_name", d->name, strlen(d->name));
    if (d->lists != NULL) {
        log_kv(l, "dnsbl_score", "%d", d->score.score);
        if (d->score.top != NULL)
            log_kv(l, "dnsbl_top", "%s", d->score.top);
    }
    if (d->helo != CHK_OFF)
        log_kv(l, "helo_check", "%s", d->helo_why ? d->helo_why : dc_state_name(d->helo));
    if (d->spf != CHK_OFF && d->spf != CHK_PENDING)
        log_kv(l, "spf", "%s", spf_result_name(d->spf_out.result));
}
