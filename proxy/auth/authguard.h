/*
 * authguard.h: brute-force control for logins, shared by every worker and listener: the growing
 * failure delay, failures per client (IPv4 /32, IPv6 ipv6_prefix) and per user name within a
 * window leading to temporary bans, and smart lockout: a ban of a user name refuses only
 * addresses that are not familiar for that user (none logged in successfully as that user
 * within [auth] familiar_window), so failing logins from elsewhere never locks the user out.
 * Client bans live in the admission table (they refuse clients at connect); user-name failures
 * and bans live in a table of their own, so they never fill the admission table. Pure policy
 * over bounded tables: time is an argument. It decides; the session core applies the delay.
 */
#ifndef MOAT_AUTHGUARD_H
#define MOAT_AUTHGUARD_H

#include "config.h"
#include "ratetable.h"

/* (user name, client) pairs that logged in, and when last: bounded, set-associative (the
 * least recently seen pair of a set goes first), thread-safe. */
struct familiar;

struct familiar *familiar_new(size_t capacity, uint64_t seed);
void familiar_free(struct familiar *f);
/* A successful login of user from client at now_ms. */
void familiar_note(struct familiar *f, const struct ratetable_key *user,
                   const struct ratetable_key *client, uint64_t now_ms);
/* Whether user logged in from client within window_ms before now_ms (window 0: never). */
bool familiar_is(struct familiar *f, const struct ratetable_key *user,
                 const struct ratetable_key *client, uint64_t window_ms, uint64_t now_ms);
size_t familiar_count(struct familiar *f);
size_t familiar_capacity(const struct familiar *f); /* pairs it holds: capacity rounded to sets */

struct authguard {
    struct ratetable *clients; /* the admission table: per-client failures and bans */
    struct ratetable *users;   /* per-user-name failures and bans (may be NULL: none) */
    struct familiar *familiar; /* may be NULL: no address is familiar */
};

/* The tables of a process, once at start (shared by every worker; they lock themselves): the
 * admission table given (may be NULL: no client bans), a user-name table of users_max entries
 * and a familiar-address table of familiar_max (user, address) pairs of its own, with random
 * seeds ([moat] max_tracked_users, max_familiar). Freed with authguard_free(). */
struct authguard *authguard_new(struct ratetable *clients, size_t users_max, size_t familiar_max);
void authguard_free(struct authguard *g);

struct authguard_verdict {
    uint32_t delay_ms;    /* before the failure reply */
    uint32_t ip_failures; /* in the ban_ip window, this one included */
    bool ip_banned;       /* this failure started a ban of the client */
    bool user_banned;     /* this failure started a ban of the user name */
    bool familiar;        /* the client is familiar for the user: not counted against the name */
};

/* The delay before the reply to the nth failure (n >= 1): failure_delay doubling up to
 * failure_delay_max. */
uint32_t authguard_delay_ms(const struct config_auth *a, uint32_t n);
/* Count one failed login of user (may be NULL/empty) from the client with key client (the
 * admission table's key, so a ban refuses the client at connect); session_failures counts this
 * one. Failures from a client familiar for the user are not counted against the user name. The
 * delay grows with the larger of the session's and the client's failures. */
void authguard_failure(const struct authguard *g, const struct config_auth *a,
                       const struct ratetable_key *client, const char *user, size_t user_len,
                       uint32_t session_failures, uint64_t now_ms, struct authguard_verdict *out);
/* Whether a login of user (may be NULL/empty) from client must fail unchecked: the client is
 * banned, or the user name is banned and the client is not familiar for it. */
bool authguard_banned(const struct authguard *g, const struct config_auth *a,
                      const struct ratetable_key *client, const char *user, size_t user_len,
                      uint64_t now_ms);
/* A successful login: the client becomes familiar for the user. */
void authguard_login(const struct authguard *g, const struct ratetable_key *client,
                     const char *user, size_t user_len, uint64_t now_ms);

#endif
