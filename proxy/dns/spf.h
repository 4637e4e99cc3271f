/*
 * spf.h: an SPF (RFC 7208) evaluator written against a resolver interface, so it is pure and
 * unit-testable with a fake resolver. The caller's resolver answers from what it already has, or
 * says "pending": the evaluation then stops with SPF_PENDING naming the query it needs, and the
 * caller fetches it and runs spf_check() again from the start (deterministic, bounded by the
 * 10-lookup limit). Nothing here does I/O; each nesting level allocates its parsed record.
 */
#ifndef MOAT_SPF_H
#define MOAT_SPF_H

#include "common.h"
#include "dnsname.h"

#define SPF_LOOKUP_LIMIT 10 /* RFC 7208 §4.6.4 */
#define SPF_VOID_LIMIT 2
#define SPF_MAX_TERMS 128

enum spf_result {
    SPF_NONE = 0,
    SPF_NEUTRAL,
    SPF_PASS,
    SPF_FAIL,
    SPF_SOFTFAIL,
    SPF_TEMPERROR,
    SPF_PERMERROR,
    SPF_PENDING /* not a result: the resolver needs out->need_type/need_name first */
};

enum spf_qtype { SPF_Q_TXT = 0, SPF_Q_A, SPF_Q_AAAA, SPF_Q_MX };
enum spf_rcode {
    SPF_R_OK = 0, /* records in the rrset */
    SPF_R_NONE,   /* NXDOMAIN or no records of that type */
    SPF_R_TEMP,   /* timeout, SERVFAIL */
    SPF_R_PENDING /* not known yet */
};

struct spf_rrset {
    size_t n;
    const char *const *strs;      /* TXT: one string per record, chunks joined; MX: host names */
    const struct dns_addr *addrs; /* A / AAAA */
};

struct spf_resolver {
    enum spf_rcode (*lookup)(void *arg, enum spf_qtype t, const char *name, struct spf_rrset *out);
    void *arg;
};

struct spf_request {
    struct dns_addr ip;
    const char *sender; /* "local@domain"; for MAIL FROM:<> the caller passes postmaster@helo */
    const char *domain; /* the domain of sender */
    const char *helo;
};

struct spf_outcome {
    enum spf_result result;
    unsigned lookups;
    unsigned void_lookups;
    char why[96]; /* the matching directive or the problem, for logs and the header */
    enum spf_qtype need_type;
    char need_name[DNSNAME_MAX + 2];
};

enum spf_mech {
    SPF_M_ALL = 0,
    SPF_M_INCLUDE,
    SPF_M_A,
    SPF_M_MX,
    SPF_M_PTR,
    SPF_M_IP4,
    SPF_M_IP6,
    SPF_M_EXISTS
};

struct spf_term {
    const char *text; /* the whole directive, for logs */
    size_t text_len;
    char qualifier; /* '+', '-', '~', '?' */
    enum spf_mech mech;
    const char *arg; /* domain-spec or address, pointing into the record; NULL if none */
    size_t arg_len;
    int cidr4, cidr6;   /* -1 = not given */
    struct dns_addr ip; /* ip4/ip6 */
};

struct spf_record {
    struct spf_term terms[SPF_MAX_TERMS];
    size_t n;
    const char *redirect;
    size_t redirect_len;
};

/* Parse one "v=spf1 ..." record. Returns 0, or -1 with *err_out set (a syntax error). */
int spf_record_parse(const char *rec, size_t n, struct spf_record *out, const char **err_out);
/* Evaluate check_host() for q. Returns out->result. */
enum spf_result spf_check(const struct spf_resolver *r, const struct spf_request *q,
                          struct spf_outcome *out);
const char *spf_result_name(enum spf_result r);

#endif
