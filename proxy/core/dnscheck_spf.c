/*
 * dnscheck_spf.c: drives spf.c for one MAIL FROM on the worker's resolver. spf_check() runs
 * against a store of the answers fetched so far; when it needs one more it names it, the lookup
 * goes out, and the evaluation is run again from the start when the answer is in. It also
 * writes the Received-SPF header (RFC 7208 §9.1), with every peer-chosen string made safe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnscheck_int.h"
#include "log.h"

static enum spf_rcode
store_lookup(void *arg, enum spf_qtype t, const char *name, struct spf_rrset *out)
{
    struct dnscheck *d = arg;
    for (size_t i = 0; i < d->nstore; i++) {
        const struct spf_stored *e = &d->store[i];
        if (e->t != t || !dnsname_equal(e->name, name))
            continue;
        out->n = e->n;
        out->strs = (const char *const *)e->strs;
        out->addrs = e->addrs;
        return e->rc;
    }
    return d->nstore >= SPF_STORE_MAX ? SPF_R_TEMP : SPF_R_PENDING;
}

static void
store_add(struct dnscheck *d, enum spf_qtype t, const char *name, const struct dns_answer *a)
{
    if (d->nstore >= SPF_STORE_MAX)
        return;
    d->spf_bytes += dns_answer_bytes(a);
    if (a->truncated)
        d->spf_answer_cut = true;
    if (a->truncated || d->spf_bytes > SPF_FETCH_MAX_BYTES)
        d->spf_too_big = true;
    struct spf_stored *e = &d->store[d->nstore++];
    memset(e, 0, sizeof(*e));
    e->t = t;
    e->name = xstrdup(name);
    e->rc = a->status == DNS_OK ? SPF_R_OK : a->status == DNS_NONE ? SPF_R_NONE : SPF_R_TEMP;
    if (a->status != DNS_OK)
        return;
    e->n = a->n;
    if (a->addrs != NULL) {
        e->addrs = xcalloc(a->n, sizeof(*e->addrs));
        memcpy(e->addrs, a->addrs, a->n * sizeof(*e->addrs));
    }
    if (a->strs != NULL) {
        e->strs = xcalloc(a->n, sizeof(char *));
        for (size_t i = 0; i < a->n; i++)
            e->strs[i] = xstrdup(a->strs[i]);
    }
}

/* Printable ASCII without the characters that end a quoted string, comment or parameter. */
static void
safe_copy(char *out, size_t cap, const char *in, size_t max)
{
    size_t k = 0;
    for (; in[k] != '\0' && k < max && k + 1 < cap; k++) {
        unsigned char c = (unsigned char)in[k];
        out[k] = c < 0x21 || c > 0x7e || strchr("\"\\();", c) ? '?' : (char)c;
    }
    out[k] = '\0';
}

static void
spf_header(struct dnscheck *d)
{
    char who[210], helo[130], why[100];
    const char *host = d->s->conf->hostname, *ip = d->s->client_addr;
    safe_copy(who, sizeof(who), d->spf_identity, 200);
    safe_copy(helo, sizeof(helo), d->spf_helo[0] ? d->spf_helo : "unknown", 120);
    safe_copy(why, sizeof(why), d->spf_out.why, 90);
    for (char *p = why; *p; p++)
        *p = *p == '?' ? ' ' : *p; /* spaces are fine inside a comment */
    enum spf_result r = d->spf_out.result;
    const char *verb = r == SPF_PASS       ? "designates"
                       : r == SPF_NEUTRAL  ? "neither permits nor denies"
                       : r == SPF_NONE     ? "publishes no SPF record for"
                       : r == SPF_FAIL     ? "does not designate"
                       : r == SPF_SOFTFAIL ? "does not designate (softfail)"
                                           : "could not be checked for";
    snprintf(d->spf_header, sizeof(d->spf_header),
             "Received-SPF: %s (%s: domain of %s %s %s; %s) client-ip=%s; envelope-from=\"%s\"; "
             "helo=%s; receiver=%s; identity=%s;\r\n",
             spf_result_name(r), host, who, verb, ip, why, ip, who, helo, host,
             d->spf_sender[0] ? "mailfrom" : "helo");
}

static void
spf_log(struct dnscheck *d)
{
    struct log_line l;
    log_begin(&l, LOG_INFO, EV_SPF);
    if (l.skip)
        return;
    log_kv(&l, "sid", "%s", d->s->sid);
    log_kv(&l, "result", "%s", spf_result_name(d->spf_out.result));
    log_kv_str(&l, "identity", d->spf_identity, strlen(d->spf_identity));
    log_kv(&l, "lookups", "%u", d->spf_out.lookups);
    log_kv_str(&l, "why", d->spf_out.why, strlen(d->spf_out.why));
    log_end(&l);
}

static void on_spf_answer(struct dns_waiter *w, const struct dns_answer *a);

/* Run the evaluation; true when it finished. */
static bool
spf_run(struct dnscheck *d)
{
    struct spf_resolver res = {store_lookup, d};
    if (d->spf_too_big) {
        memset(&d->spf_out, 0, sizeof(d->spf_out));
        d->spf_out.result = SPF_PERMERROR;
        if (d->spf_answer_cut)
            snprintf(d->spf_out.why, sizeof(d->spf_out.why),
                     "DNS answer over the SPF limit of %u bytes", (unsigned)DNS_ANSWER_MAX_BYTES);
        else
            snprintf(d->spf_out.why, sizeof(d->spf_out.why),
                     "DNS data over the SPF limit of %u bytes", (unsigned)SPF_FETCH_MAX_BYTES);
        d->spf = CHK_OK;
        spf_header(d);
        spf_log(d);
        return true;
    }
    if (spf_check(&res, &d->spf_req, &d->spf_out) != SPF_PENDING) {
        d->spf = CHK_OK;
        spf_header(d);
        spf_log(d);
        return true;
    }
    static const enum dns_type types[] = {[SPF_Q_TXT] = DNS_T_TXT,
                                          [SPF_Q_A] = DNS_T_A,
                                          [SPF_Q_AAAA] = DNS_T_AAAA,
                                          [SPF_Q_MX] = DNS_T_MX};
    dc_waiter_init(&d->spf_w, d, (unsigned)d->spf_out.need_type);
    dns_lookup(d->r, types[d->spf_out.need_type], d->spf_out.need_name, &d->spf_w.w, on_spf_answer);
    return false;
}

static void
on_spf_answer(struct dns_waiter *w, const struct dns_answer *a)
{
    struct dnscheck *d = dc_of(w);
    enum spf_qtype t = (enum spf_qtype)container_of(w, struct check_waiter, w)->index;
    store_add(d, t, d->spf_out.need_name, a);
    if (spf_run(d))
        dc_progress(d);
}

void
dc_spf_start(struct dnscheck *d, const char *sender, size_t n, const char *helo)
{
    dns_cancel(&d->spf_w.w);
    dc_spf_clear(d);
    d->logged &= ~(1u << 3); /* F_SPF: log this transaction's finding */
    n = MOAT_MIN(n, sizeof(d->spf_sender) - 1);
    memcpy(d->spf_sender, sender, n);
    d->spf_sender[n] = '\0';
    snprintf(d->spf_helo, sizeof(d->spf_helo), "%s", helo ? helo : "");
    if (n > 0)
        snprintf(d->spf_identity, sizeof(d->spf_identity), "%s", d->spf_sender);
    else /* RFC 7208 §2.4: the null sender is checked as postmaster@helo */
        snprintf(d->spf_identity, sizeof(d->spf_identity), "postmaster@%s", d->spf_helo);
    const char *at = strrchr(d->spf_identity, '@');
    memset(&d->spf_req, 0, sizeof(d->spf_req));
    d->spf_req.ip = d->client;
    d->spf_req.sender = d->spf_identity;
    d->spf_req.domain = at ? at + 1 : "";
    d->spf_req.helo = d->spf_helo;
    d->spf = CHK_PENDING;
    spf_run(d);
}
