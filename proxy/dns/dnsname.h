/*
 * dnsname.h: pure helpers for DNS names that came from the network or a client: validation
 * (LDH host names, SPF domains), reverse names for PTR and DNS list queries, HELO syntax.
 * A name that fails validation is never used anywhere (XCLIENT, headers, queries).
 */
#ifndef MOAT_DNSNAME_H
#define MOAT_DNSNAME_H

#include <sys/socket.h>

#include "common.h"

#define DNSNAME_MAX 253 /* text form without the trailing dot */

/* An address of either family, for comparisons without sockaddr juggling. */
struct dns_addr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t b[16];
};

/* A host name: labels of letters, digits and inner hyphens, 1..63 each, 253 in all, at least
 * one label; one trailing dot is allowed. Anything else (CR, LF, space, controls, '_') fails. */
bool dnsname_host_valid(const char *p, size_t n);
/* A domain to query (SPF targets, list zones): like a host name but '_' is allowed too. */
bool dnsname_domain_valid(const char *p, size_t n);
bool dnsname_equal(const char *a, const char *b);

/* The reverse name of addr under suffix ("in-addr.arpa"/"ip6.arpa" when suffix is NULL):
 * "7.2.0.192.zone". Returns the length, or -1 if it does not fit. */
int dnsname_reverse(const struct dns_addr *addr, const char *suffix, char *out, size_t cap);
/* From a sockaddr (v4-mapped IPv6 becomes IPv4). Returns -1 for other families. */
int dns_addr_from_sockaddr(const struct sockaddr *sa, struct dns_addr *out);
int dns_addr_parse(const char *text, struct dns_addr *out);
bool dns_addr_equal(const struct dns_addr *a, const struct dns_addr *b);
/* Whether a and b share their first bits bits. */
bool dns_addr_prefix_match(const struct dns_addr *a, const struct dns_addr *b, unsigned bits);

enum helo_kind {
    HELO_NAME = 0,  /* a valid host name with at least one dot */
    HELO_LITERAL,   /* [192.0.2.1] or [IPv6:...] */
    HELO_BARE_NAME, /* a valid name without a dot ("localhost", "pc17") */
    HELO_INVALID
};
/* Classify a HELO/EHLO argument; for a literal, *addr_out gets the address. */
enum helo_kind dnsname_helo_classify(const char *p, size_t n, struct dns_addr *addr_out);

#endif
