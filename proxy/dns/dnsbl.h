/*
 * dnsbl.h: DNS block and allow lists, postscreen style: the list specification
 * ("zone[=127.0.0.2..11;127.0.0.20]*weight, ...", negative weights for allowlists), what one
 * list's answer means, and the combined score against the thresholds. Pure: answers come in as
 * addresses, nothing here queries DNS.
 */
#ifndef MOAT_DNSBL_H
#define MOAT_DNSBL_H

#include "common.h"

#define DNSBL_MAX_ZONES 16
#define DNSBL_MAX_RANGES 8

struct dnsbl_range {
    uint32_t lo, hi; /* host order, inclusive */
};

struct dnsbl_zone {
    char name[254];
    struct dnsbl_range ranges[DNSBL_MAX_RANGES];
    size_t nranges; /* 0 = any answer in 127.0.0.0/8 except the error codes */
    int weight;
};

struct dnsbl_list {
    struct dnsbl_zone zones[DNSBL_MAX_ZONES];
    size_t n;
};

/* What one list said about the client. */
enum dnsbl_answer {
    DNSBL_NOT_LISTED = 0,
    DNSBL_LISTED,
    DNSBL_ERROR_CODE, /* 127.255.255.x or an answer outside 127/8: the list refuses us */
    DNSBL_TEMPFAIL    /* no answer (timeout, SERVFAIL): counts as not listed */
};

enum dnsbl_verdict {
    DNSBL_PASS = 0,
    DNSBL_BLOCK,    /* score >= threshold */
    DNSBL_ALLOWLIST /* score <= allowlist threshold (< 0): skip the other checks */
};

struct dnsbl_score {
    int score;
    int top_weight;  /* the highest positive weight among the lists that listed the client */
    const char *top; /* that list's zone, for the refusal; NULL if none */
    unsigned listed; /* lists that listed (block or allow) */
    unsigned errors; /* lists that answered an error code */
    unsigned tempfail;
};

/* Parse a comma/space separated list. Returns 0, or -1 with *err_out set (static text). */
int dnsbl_parse(const char *spec, struct dnsbl_list *out, const char **err_out);
/* Classify one list's A answers (IPv4 in network order). */
enum dnsbl_answer dnsbl_classify(const struct dnsbl_zone *z, const uint32_t *addrs, size_t n);
void dnsbl_score_init(struct dnsbl_score *sc);
void dnsbl_score_add(struct dnsbl_score *sc, const struct dnsbl_zone *z, enum dnsbl_answer a);
/* Thresholds as in postscreen: block when score >= threshold; allowlisted when the allowlist
 * threshold is negative and score <= it. */
enum dnsbl_verdict dnsbl_verdict(const struct dnsbl_score *sc, int threshold,
                                 int allowlist_threshold);
const char *dnsbl_answer_name(enum dnsbl_answer a);

#endif
