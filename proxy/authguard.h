/*
 * authguard.h: brute-force control for logins, shared by every worker and listener: the growing
 * failure delay, and failures per client (IPv4 /32, IPv6 /64) and per user name within a window
 * leading to temporary bans. Pure policy over a ratetable (the admission table, whose bans refuse
 * clients at connect): time is an argument. It decides; the session core applies the delay with
 * a timer.
 */
#ifndef MOAT_AUTHGUARD_H
#define MOAT_AUTHGUARD_H

#include "config.h"
#include "ratetable.h"

struct authguard_verdict {
    uint32_t delay_ms;    /* before the failure reply */
    uint32_t ip_failures; /* in the ban_ip window, this one included */
    bool ip_banned;       /* this failure started a ban of the client */
    bool user_banned;     /* this failure started a ban of the user name */
};

/* The delay before the reply to the nth failure (n >= 1): failure_delay doubling up to
 * failure_delay_max. */
uint32_t authguard_delay_ms(const struct config_auth *a, uint32_t n);
/* Count one failed login of user (may be NULL/empty) from the client with key client (the
 * admission table's key, so a ban refuses the client at connect); session_failures counts this
 * one. The delay grows with the larger of the session's and the client's failures. */
void authguard_failure(struct ratetable *t, const struct config_auth *a,
                       const struct ratetable_key *client, const char *user, size_t user_len,
                       uint32_t session_failures, uint64_t now_ms, struct authguard_verdict *out);
/* Whether the client or the user name (may be NULL/empty) is banned. */
bool authguard_banned(struct ratetable *t, const struct ratetable_key *client, const char *user,
                      size_t user_len, uint64_t now_ms);

#endif
