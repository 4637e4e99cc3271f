/*
 * admission.c: admission control at accept. Cheap, synchronous, on the main thread (listeners
 * behind a balancer or in a fleet admit in two steps: the client's part on a worker, intake.c);
 * a refusal is one non-blocking write of the protocol's line by the listener (or nothing on
 * implicit-TLS ports); this file only says why. Owns the process-wide per-client table and the
 * counts of open sessions and of TLS handshakes in progress; workers only report ends into
 * them. Never blocks on I/O and never refuses a client in dry-run mode.
 */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "admission.h"
#include "log.h"

static const char *const verdict_names[] = {
    [ADMIT_OK] = "ok",
    [ADMIT_MAX_SESSIONS] = "max_sessions",
    [ADMIT_DENIED] = "denied",
    [ADMIT_PER_IP] = "max_sessions_per_ip",
    [ADMIT_RATE] = "connection_rate_per_ip",
    [ADMIT_TLS_HANDSHAKES] = "max_tls_handshakes",
    [ADMIT_TABLE_FULL] = "max_tracked_clients",
    [ADMIT_BANNED] = "banned",
    [ADMIT_PROXY_UNTRUSTED] = "proxy_untrusted",
    [ADMIT_PROXY_HEADER] = "proxy_header",
};

/* Written once by the main thread before the first hand-off to a worker (the worker queue's
 * lock orders it before any worker reads it). */
static _Atomic(struct ratetable *) table;
static atomic_uint handshakes;
static atomic_uint sessions; /* admitted and not ended, in every worker (for max_sessions) */

const char *
admission_verdict_name(enum admission_verdict v)
{
    return (size_t)v < ARRAY_SIZE(verdict_names) && verdict_names[v] ? verdict_names[v] : "?";
}

struct ratetable *
admission_start(const struct config *conf)
{
    struct ratetable *t = atomic_load(&table);
    if (t != NULL)
        return t;
    t = ratetable_new(conf->max_tracked_clients ? conf->max_tracked_clients : 65536,
                      moat_random_seed());
    atomic_store(&table, t);
    return t;
}

void
admission_client_key(struct ratetable_key *k, const struct config_listener *l,
                     const struct sockaddr *peer)
{
    ratetable_key_addr(k, peer, l->limits.ipv6_prefix);
}

/* allow-listed clients are exempt from deny and from the per-client limits. */
bool
admission_exempt(const struct config_listener *l, const struct sockaddr *peer)
{
    return l->access.allow.n > 0 && cidr_list_match(&l->access.allow, peer);
}

static enum admission_verdict
from_table(enum ratetable_verdict v)
{
    switch (v) {
    case RT_OK:
        return ADMIT_OK;
    case RT_CONCURRENT:
        return ADMIT_PER_IP;
    case RT_RATE:
        return ADMIT_RATE;
    case RT_BANNED:
        return ADMIT_BANNED;
    case RT_FULL:
        return ADMIT_TABLE_FULL;
    }
    return ADMIT_TABLE_FULL;
}

static void
log_verdict(enum log_event ev, const struct config_listener *l, const struct sockaddr *peer,
            enum admission_verdict v)
{
    char addr[CONFVAL_ADDR_STRLEN];
    struct log_line line;
    log_begin(&line, LOG_INFO, ev);
    if (line.skip)
        return;
    log_kv(&line, "listener", "%s", l->name);
    log_kv(&line, "client", "%s", confval_addr_format(peer, addr, sizeof(addr)));
    log_kv(&line, "reason", "%s", admission_verdict_name(v));
    if (ev == EV_WOULD_REFUSE)
        log_kv(&line, "mode", "log");
    log_end(&line);
}

/* The per-client table: concurrency, connection rate, bans. Counts the client when admitted. */
static enum admission_verdict
check_client(const struct config *conf, const struct config_listener *l,
             const struct sockaddr *peer)
{
    struct ratetable_key k;
    admission_client_key(&k, l, peer);
    bool dry = l->limits.mode == MODE_LOG;
    enum admission_verdict v =
        from_table(ratetable_connect(admission_start(conf), &k, l->limits.max_sessions_per_ip,
                                     &l->limits.connection_rate_per_ip, dry, moat_now_ms()));
    /* the table's bound protects moat itself: never waived, and then nothing was counted */
    if (v == ADMIT_OK || v == ADMIT_TABLE_FULL || !dry)
        return v;
    log_verdict(EV_WOULD_REFUSE, l, peer, v);
    return ADMIT_OK;
}

/* What does not depend on the client: the process's bounds. */
static enum admission_verdict
check_process(const struct config *conf, const struct config_listener *l)
{
    if (conf->max_sessions > 0 && atomic_load(&sessions) >= conf->max_sessions)
        return ADMIT_MAX_SESSIONS;
    if (l->tls == LTLS_IMPLICIT && conf->max_tls_handshakes > 0 &&
        atomic_load(&handshakes) >= conf->max_tls_handshakes)
        return ADMIT_TLS_HANDSHAKES;
    return ADMIT_OK;
}

/* Access lists, then (for a client not allow-listed) the per-client table. */
static enum admission_verdict
check_access_client(const struct config *conf, const struct config_listener *l,
                    const struct sockaddr *peer)
{
    bool allowed = admission_exempt(l, peer);
    if (!allowed && l->access.deny.n > 0 && cidr_list_match(&l->access.deny, peer)) {
        if (l->access.mode == MODE_ENFORCE)
            return ADMIT_DENIED;
        log_verdict(EV_WOULD_REFUSE, l, peer, ADMIT_DENIED);
    }
    if (allowed)
        return ADMIT_OK;
    return check_client(conf, l, peer);
}

enum admission_verdict
admission_check_accept(const struct config *conf, const struct config_listener *l)
{
    return check_process(conf, l);
}

enum admission_verdict
admission_check_client(const struct config *conf, const struct config_listener *l,
                       const struct sockaddr *peer)
{
    /* sessions may have opened since accept (intakes are not counted until admitted) */
    enum admission_verdict v = check_process(conf, l);
    if (v == ADMIT_OK)
        v = check_access_client(conf, l, peer);
    if (v == ADMIT_OK)
        atomic_fetch_add(&sessions, 1);
    return v;
}

void
admission_count_uncounted(void)
{
    atomic_fetch_add(&sessions, 1);
}

static enum admission_verdict
admission_decide(const struct config *conf, const struct config_listener *l,
                 const struct sockaddr *peer)
{
    /* access lists first: a denied client is told so even when moat is busy */
    if (!admission_exempt(l, peer) && l->access.mode == MODE_ENFORCE && l->access.deny.n > 0 &&
        cidr_list_match(&l->access.deny, peer))
        return ADMIT_DENIED;
    enum admission_verdict v = check_process(conf, l);
    if (v != ADMIT_OK)
        return v;
    return check_access_client(conf, l, peer);
}

enum admission_verdict
admission_check(const struct config *conf, const struct config_listener *l,
                const struct sockaddr *peer, socklen_t len)
{
    enum admission_verdict v = admission_decide(conf, l, peer);
    if (v == ADMIT_OK)
        atomic_fetch_add(&sessions, 1);
    return v;
}

void
admission_session_end(const struct config_listener *l, const struct sockaddr *peer)
{
    atomic_fetch_sub(&sessions, 1);
    struct ratetable *t = atomic_load(&table);
    /* counted exactly when admitted and not allow-listed (see admission_check) */
    if (t == NULL || peer == NULL || admission_exempt(l, peer))
        return;
    struct ratetable_key k;
    admission_client_key(&k, l, peer);
    ratetable_release(t, &k, moat_now_ms());
}

void
admission_handshake_begin(void)
{
    atomic_fetch_add(&handshakes, 1);
}

void
admission_handshake_end(void)
{
    atomic_fetch_sub(&handshakes, 1);
}

unsigned
admission_handshakes(void)
{
    return atomic_load(&handshakes);
}

const char *
admission_refusal_text(enum admission_verdict v)
{
    switch (v) {
    case ADMIT_PER_IP:
    case ADMIT_RATE:
        return "Too many connections from your host";
    case ADMIT_BANNED:
        return "Too many failures from your host, try again later";
    case ADMIT_OK:
    case ADMIT_MAX_SESSIONS:
    case ADMIT_DENIED:
    case ADMIT_TLS_HANDSHAKES:
    case ADMIT_TABLE_FULL:
    case ADMIT_PROXY_UNTRUSTED:
    case ADMIT_PROXY_HEADER:
        break;
    }
    return "Too many connections, try again later";
}

void
admission_log(const struct config_listener *l, const struct sockaddr *peer,
              enum admission_verdict v)
{
    log_verdict(EV_REFUSED, l, peer, v);
}
