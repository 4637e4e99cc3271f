/*
 * dnscheck_int.h: what the DNS check files share: one session's check state. dnscheck.c (the
 * lookups: reverse DNS, DNS lists), dnscheck_policy.c (HELO, verdicts and the protocol
 * services), dnscheck_spf.c (SPF) and uribl.c (the URI lists) include it; nothing else does.
 */
#ifndef MOAT_DNSCHECK_INT_H
#define MOAT_DNSCHECK_INT_H

#include <string.h>

#include "dns.h"
#include "dnsbl.h"
#include "session.h"
#include "spf.h"

#define DC_SENDER_MAX 320
#define RDNS_MAX_NAMES 5
#define SPF_STORE_MAX 128
/* The DNS data (TXT strings, MX names, addresses) one SPF evaluation may fetch: over it, or on an
 * answer cut at DNS_ANSWER_MAX_BYTES, the result is permerror (RFC 7208 §4.6.4: a limit). */
#define SPF_FETCH_MAX_BYTES 65536

enum check_state { CHK_OFF = 0, CHK_PENDING, CHK_OK, CHK_NONE, CHK_TEMP, CHK_BAD };

struct check_waiter {
    struct dns_waiter w;
    struct dnscheck *d;
    unsigned index;
};

struct spf_stored {
    enum spf_qtype t;
    char *name;
    enum spf_rcode rc;
    size_t n;
    char **strs;
    struct dns_addr *addrs;
};

struct dnscheck {
    struct session *s;
    struct dns_resolver *r;
    const struct config_dns *cd;
    bool enforce;
    bool notify; /* the protocol waits for on_dns_done */
    struct dns_addr client;
    /* forward-confirmed reverse DNS */
    enum check_state rdns;
    struct check_waiter ptr_w;
    char names[RDNS_MAX_NAMES][DNSNAME_MAX + 2];
    struct check_waiter fwd_w[RDNS_MAX_NAMES];
    unsigned nnames, fwd_pending;
    bool fwd_temp, bad_name;
    char name[DNSNAME_MAX + 2]; /* the confirmed name */
    /* DNS lists */
    const struct dnsbl_list *lists;
    struct check_waiter bl_w[DNSBL_MAX_ZONES];
    unsigned bl_pending;
    struct dnsbl_score score;
    enum dnsbl_verdict bl_verdict;
    /* HELO */
    enum check_state helo;
    const char *helo_why;
    struct check_waiter helo_w;
    char helo_name[256];
    bool helo_aaaa; /* the A lookup found nothing: AAAA asked */
    /* SPF */
    enum check_state spf;
    struct check_waiter spf_w;
    char spf_sender[DC_SENDER_MAX];   /* as the client gave it (may be empty) */
    char spf_identity[DC_SENDER_MAX]; /* what SPF checks: the sender or postmaster@helo */
    char spf_helo[DNSNAME_MAX + 2];
    struct spf_request spf_req;
    struct spf_outcome spf_out;
    struct spf_stored store[SPF_STORE_MAX];
    size_t nstore;
    size_t spf_bytes;    /* fetched by this evaluation */
    bool spf_too_big;    /* over SPF_FETCH_MAX_BYTES, or an answer was cut */
    bool spf_answer_cut; /* one answer over DNS_ANSWER_MAX_BYTES */
    char spf_header[1024];
    char reply[256];
    unsigned logged;     /* findings already logged, one bit per check */
    struct uribl *uribl; /* uribl.c: URI lists on message content, or NULL */
};

/* The check a waiter belongs to; a waiter set up for check d, slot index. Inline, so the URI
 * lists (uribl.c) and the policy use them without calling back into dnscheck.c. */
static inline struct dnscheck *
dc_of(struct dns_waiter *w)
{
    return container_of(w, struct check_waiter, w)->d;
}

static inline void
dc_waiter_init(struct check_waiter *cw, struct dnscheck *d, unsigned index)
{
    memset(cw, 0, sizeof(*cw));
    cw->d = d;
    cw->index = index;
}

/* What list z's answer says: its IPv4 addresses against the zone's filter; no answer (timeout,
 * SERVFAIL) is a tempfail. Shared by the client lists and the URI lists. */
static inline enum dnsbl_answer
dc_list_answer(const struct dnsbl_zone *z, const struct dns_answer *a)
{
    if (a->status == DNS_TEMP)
        return DNSBL_TEMPFAIL;
    if (a->status != DNS_OK)
        return DNSBL_NOT_LISTED;
    uint32_t v4[32];
    size_t n = 0;
    for (size_t i = 0; i < a->n && n < ARRAY_SIZE(v4); i++)
        if (a->addrs[i].family == AF_INET)
            memcpy(&v4[n++], a->addrs[i].b, 4);
    return dnsbl_classify(z, v4, n);
}
bool dc_client_pending(const struct dnscheck *d);
/* Tell the protocol, if it waits, that what it waited for is done. */
void dc_progress(struct dnscheck *d);
void dc_spf_clear(struct dnscheck *d);
const char *dc_state_name(enum check_state c);
/* dnscheck_spf.c: evaluate SPF for a new MAIL FROM (sender may be empty: postmaster@helo). */
void dc_spf_start(struct dnscheck *d, const char *sender, size_t n, const char *helo);
/* uribl.c: NULL unless [dns] uribl applies to this session (an MX listener). */
struct uribl *uribl_new(struct dnscheck *d);
void uribl_cancel(struct uribl *u);
void uribl_free(struct uribl *u);

#endif
