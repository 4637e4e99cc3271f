/*
 * ratetable.h: a bounded, thread-safe table of per-client counters for admission control and
 * bans: concurrent sessions, sliding-window rates and a "banned until" time per key (an IPv4 /32,
 * an IPv6 prefix, or a hashed user name). Capacity is fixed at creation: old idle entries are
 * evicted, never one with live sessions or an active ban. Pure: time is always an argument.
 */
#ifndef MOAT_RATETABLE_H
#define MOAT_RATETABLE_H

#include <sys/socket.h>

#include "common.h"
#include "confval.h"

#define RATETABLE_KEY_MAX 24

/* Key namespaces: the first byte of every key, so addresses and user names never collide. */
enum ratetable_key_kind { RTKEY_IPV4 = 4, RTKEY_IPV6 = 6, RTKEY_USER = 'u' };

struct ratetable_key {
    uint8_t len;
    uint8_t bytes[RATETABLE_KEY_MAX];
};

/* The rates one entry keeps, one sliding window each. */
enum rate_kind {
    RATE_CONNECTIONS = 0, /* new connections (admission) */
    RATE_MESSAGES,        /* messages the backend accepted (SMTP) */
    RATE_RECIPIENTS,      /* recipients accepted (SMTP) */
    RATE_AUTH_FAILURES,   /* failed logins */
    RATE_KINDS
};

enum ratetable_verdict {
    RT_OK = 0,
    RT_CONCURRENT, /* max_concurrent reached */
    RT_RATE,       /* the rate's count reached in its window */
    RT_BANNED,     /* banned until a later time */
    RT_FULL        /* no entry could be made: every entry has live sessions or a ban */
};

struct ratetable;

/* capacity entries at most (>= 1); seed randomises the hash (pass a random value). */
struct ratetable *ratetable_new(size_t capacity, uint64_t seed);
void ratetable_free(struct ratetable *t);

/* The client's key: IPv4 (also IPv4-mapped IPv6) as /32, IPv6 cut to v6_prefix bits (1-128). */
void ratetable_key_addr(struct ratetable_key *k, const struct sockaddr *sa, unsigned v6_prefix);
/* A user name (any length, compared case-sensitively) as a fixed-size hash. */
void ratetable_key_user(struct ratetable_key *k, const char *name, size_t len);
/* "192.0.2.7", "2001:db8:1:2::/64", or "user:<hash>" for logs. */
const char *ratetable_key_format(const struct ratetable_key *k, char *buf, size_t size);

/* One new connection from k: refused with RT_BANNED, RT_CONCURRENT (concurrent >=
 * max_concurrent, 0 = no limit) or RT_RATE (RATE_CONNECTIONS over rate, count 0 = no limit).
 * When the verdict is RT_OK, or force is set (dry run: the caller admits anyway), the connection
 * is counted (concurrent + 1, one connection event) and the caller must ratetable_release() it
 * when the session ends. RT_FULL is never counted. */
enum ratetable_verdict ratetable_connect(struct ratetable *t, const struct ratetable_key *k,
                                         uint32_t max_concurrent, const struct rate *rate,
                                         bool force, uint64_t now_ms);
/* A counted connection ended. Unknown keys are ignored. */
void ratetable_release(struct ratetable *t, const struct ratetable_key *k, uint64_t now_ms);

/* Would n more events of kind exceed rate? RT_OK or RT_RATE; counts nothing. */
enum ratetable_verdict ratetable_check(struct ratetable *t, const struct ratetable_key *k,
                                       enum rate_kind kind, const struct rate *rate, uint32_t n,
                                       uint64_t now_ms);
/* Check and count: n events of kind are counted when within rate (or force); RT_OK, RT_RATE
 * (not counted unless force) or RT_FULL. */
enum ratetable_verdict ratetable_take(struct ratetable *t, const struct ratetable_key *k,
                                      enum rate_kind kind, const struct rate *rate, uint32_t n,
                                      bool force, uint64_t now_ms);
/* Count n events without a check; returns the events now in the window (estimate). */
uint32_t ratetable_add(struct ratetable *t, const struct ratetable_key *k, enum rate_kind kind,
                       const struct rate *rate, uint32_t n, uint64_t now_ms);

/* Ban k until until_ms (a later ban extends, an earlier one never shortens). */
void ratetable_ban(struct ratetable *t, const struct ratetable_key *k, uint64_t until_ms,
                   uint64_t now_ms);
/* Milliseconds left of k's ban, 0 if none. */
uint64_t ratetable_banned_for(struct ratetable *t, const struct ratetable_key *k, uint64_t now_ms);

/* Introspection for tests and metrics. */
size_t ratetable_count(struct ratetable *t);
size_t ratetable_capacity(const struct ratetable *t);
uint32_t ratetable_concurrent(struct ratetable *t, const struct ratetable_key *k);

const char *ratetable_verdict_name(enum ratetable_verdict v);

#endif
