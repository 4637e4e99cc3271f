/*
 * dns.h: the worker's asynchronous resolver: one c-ares channel per worker thread driven by its
 * libev loop, a bounded TTL cache that also keeps negative and temporary-failure answers for a
 * short while, and in-flight joining (a second lookup of the same name waits for the first
 * query). A waiter is embedded in its owner; dns_cancel() unlinks it so a closed session is
 * never called back. Callbacks never run inside dns_lookup().
 */
#ifndef MOAT_DNS_H
#define MOAT_DNS_H

#include "common.h"
#include "dnsname.h"

struct ev_loop;

/* DNS checks (dnscheck.c): off, log the outcome, log what would be refused, or refuse. */
enum dns_policy { DNS_POLICY_OFF = 0, DNS_POLICY_WARN, DNS_POLICY_DRY_RUN, DNS_POLICY_REJECT };

/* The [dns] section (config.h holds it in struct config). */
struct dnsbl_list;
struct config_dns {
    char *servers;       /* "127.0.0.1:5353,[::1]:53"; NULL = the system's resolv.conf */
    uint32_t timeout_ms; /* per try */
    uint32_t tries;
    uint32_t cache_size; /* entries per worker */
    size_t cache_bytes;  /* the cache's memory budget per worker */
    uint32_t cache_max_ttl_ms;
    uint32_t negative_ttl_ms;
    uint32_t tempfail_ttl_ms;
    enum dns_policy fcrdns;
    enum dns_policy helo_check;
    bool helo_resolve;             /* the HELO name must resolve (A/AAAA) */
    char *dnsbl;                   /* "zone[=127.0.0.2..11]*weight, ..." */
    struct dnsbl_list *dnsbl_list; /* parsed; NULL when empty */
    enum dns_policy dnsbl_action;
    uint32_t dnsbl_threshold;
    char *dnsbl_allowlist_threshold_text;
    int dnsbl_allowlist_threshold; /* <= 0; 0 = off */
    enum dns_policy spf;
    /* URI block lists on MX message content (uribl.c) */
    char *uribl;                   /* "zone[=127.0.0.2..11]*weight, ..." like dnsbl */
    struct dnsbl_list *uribl_list; /* parsed; NULL when empty */
    char *uribl_ip_zones;          /* the uribl zones that take IPv4 literals, reversed */
    uint32_t uribl_ip_mask;        /* parsed: one bit per uribl_list zone */
    enum dns_policy uribl_policy;
    uint32_t uribl_threshold;
    uint32_t uribl_max_lookups; /* DNS queries per message (domains x lists) */
    size_t uribl_max_bytes;     /* message bytes scanned */
    uint32_t uribl_max_depth;   /* nested MIME entities */
    uint32_t uribl_max_parts;   /* MIME entities */
    uint32_t uribl_timeout_ms;  /* end of data waits this long for answers at most */
};

struct config;
struct dns_resolver;
struct dns_entry;
struct ev_loop;
struct config_dns;

/* One answer keeps at most this many bytes of strings (PTR, TXT, MX): the rest is dropped and
 * the answer marked truncated. A cache's byte budget is never below DNS_CACHE_BYTES_MIN. */
#define DNS_ANSWER_MAX_BYTES 16384
#define DNS_CACHE_BYTES_MIN 65536

enum dns_type { DNS_T_A = 0, DNS_T_AAAA, DNS_T_PTR, DNS_T_TXT, DNS_T_MX };
enum dns_status {
    DNS_OK = 0, /* records in the answer */
    DNS_NONE,   /* NXDOMAIN, no records of the type, or an unusable answer */
    DNS_TEMP    /* timeout, SERVFAIL, refused, no server: try again later */
};

/* Valid only during the callback. */
struct dns_answer {
    enum dns_status status;
    size_t n;
    char **strs;            /* PTR names, TXT records (chunks joined), MX hosts by preference */
    struct dns_addr *addrs; /* A / AAAA */
    bool bad_reply;         /* the server answered something c-ares refused to parse */
    bool truncated;         /* over DNS_ANSWER_MAX_BYTES, a record or the record count: cut */
};

struct dns_waiter;
typedef void (*dns_done_fn)(struct dns_waiter *w, const struct dns_answer *a);

struct dns_waiter {
    dns_done_fn done;
    /* private */
    struct dns_entry *entry;
    struct dns_waiter *prev, *next;
    bool ready; /* on the resolver's delivery list rather than the entry's */
};

/* The resolver of loop for the [dns] section d, kept in *slot (the loop's) and created on first
 * use (and anew when a reload changed d), with one more user: give it back with
 * dns_resolver_put(). NULL (logged) when c-ares cannot make a channel: the caller goes without
 * DNS checks. */
struct dns_resolver *dns_resolver_get(struct ev_loop *loop, struct dns_resolver **slot,
                                      const struct config_dns *d);
void dns_resolver_put(struct dns_resolver *r);
/* Look name up; w->done runs later from the loop, exactly once unless cancelled. w must stay
 * alive until then. */
void dns_lookup(struct dns_resolver *r, enum dns_type t, const char *name, struct dns_waiter *w,
                dns_done_fn done);
/* Forget a waiter (no callback); harmless if it is not waiting. */
void dns_cancel(struct dns_waiter *w);
bool dns_waiting(const struct dns_waiter *w);
/* At the loop's end, on its thread, with the older resolvers still chained to it. NULL is fine. */
void dns_resolver_free(struct dns_resolver *r);
const char *dns_status_name(enum dns_status s);
/* The bytes of strings and addresses an answer holds (what the cache charges for it). */
size_t dns_answer_bytes(const struct dns_answer *a);

/* For the unit tests of the cache's accounting: a resolver on loop that never queries (its
 * channel points at no server), answers put into its cache as if they had come in at `now`,
 * and the cache's totals. */
struct dns_resolver *dns_resolver_new_test(struct ev_loop *loop, const struct config_dns *d);
void dns_cache_put_test(struct dns_resolver *r, enum dns_type t, const char *name,
                        const char *const *strs, size_t n, double now);
bool dns_cache_has_test(struct dns_resolver *r, enum dns_type t, const char *name);
void dns_cache_stats(const struct dns_resolver *r, size_t *count, size_t *bytes);

#endif
