/*
 * authguard.c: brute-force policy for logins over bounded tables (see authguard.h). Pure: time
 * is an argument; it never sleeps and never sees a password, only user names (hashed).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "authguard.h"

#define FAMILIAR_WAYS 8

struct familiar_entry {
    struct ratetable_key user;
    struct ratetable_key client;
    uint64_t last_ms; /* 0: free */
};

struct familiar {
    pthread_mutex_t lock;
    uint64_t seed;
    size_t sets;
    struct familiar_entry *e; /* sets * FAMILIAR_WAYS */
    size_t count;
};

struct familiar *
familiar_new(size_t capacity, uint64_t seed)
{
    struct familiar *f = xcalloc(1, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    f->seed = seed;
    f->sets = capacity / FAMILIAR_WAYS > 0 ? capacity / FAMILIAR_WAYS : 1;
    f->e = xcalloc(f->sets * FAMILIAR_WAYS, sizeof(*f->e));
    return f;
}

void
familiar_free(struct familiar *f)
{
    if (f == NULL)
        return;
    pthread_mutex_destroy(&f->lock);
    free(f->e);
    free(f);
}

static uint64_t
mix(uint64_t h, const struct ratetable_key *k)
{
    for (size_t i = 0; i < k->len; i++) {
        h ^= k->bytes[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 31;
    h *= 0x7fb5d329728ea185ull;
    h ^= h >> 27;
    return h;
}

static bool
key_eq(const struct ratetable_key *a, const struct ratetable_key *b)
{
    return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

static struct familiar_entry *
set_of(struct familiar *f, const struct ratetable_key *user, const struct ratetable_key *client)
{
    uint64_t h = mix(mix(f->seed ^ 0xcbf29ce484222325ull, user), client);
    return &f->e[(h % f->sets) * FAMILIAR_WAYS];
}

void
familiar_note(struct familiar *f, const struct ratetable_key *user,
              const struct ratetable_key *client, uint64_t now_ms)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->lock);
    struct familiar_entry *set = set_of(f, user, client), *victim = &set[0];
    for (size_t i = 0; i < FAMILIAR_WAYS; i++) {
        struct familiar_entry *x = &set[i];
        if (x->last_ms != 0 && key_eq(&x->user, user) && key_eq(&x->client, client)) {
            victim = x;
            break;
        }
        if (x->last_ms < victim->last_ms)
            victim = x; /* a free one (0), else the least recently seen */
    }
    if (victim->last_ms == 0)
        f->count++;
    victim->user = *user;
    victim->client = *client;
    victim->last_ms = now_ms > 0 ? now_ms : 1;
    pthread_mutex_unlock(&f->lock);
}

bool
familiar_is(struct familiar *f, const struct ratetable_key *user,
            const struct ratetable_key *client, uint64_t window_ms, uint64_t now_ms)
{
    if (f == NULL || window_ms == 0)
        return false;
    bool yes = false;
    pthread_mutex_lock(&f->lock);
    struct familiar_entry *set = set_of(f, user, client);
    for (size_t i = 0; i < FAMILIAR_WAYS && !yes; i++) {
        const struct familiar_entry *x = &set[i];
        yes = x->last_ms != 0 && key_eq(&x->user, user) && key_eq(&x->client, client) &&
              x->last_ms <= now_ms && now_ms - x->last_ms < window_ms;
    }
    pthread_mutex_unlock(&f->lock);
    return yes;
}

size_t
familiar_capacity(const struct familiar *f)
{
    return f->sets * FAMILIAR_WAYS;
}

size_t
familiar_count(struct familiar *f)
{
    pthread_mutex_lock(&f->lock);
    size_t n = f->count;
    pthread_mutex_unlock(&f->lock);
    return n;
}

uint32_t
authguard_delay_ms(const struct config_auth *a, uint32_t n)
{
    if (n == 0 || a->failure_delay_ms == 0)
        return 0;
    uint64_t d = a->failure_delay_ms;
    for (uint32_t i = 1; i < n && d < a->failure_delay_max_ms; i++)
        d *= 2;
    if (a->failure_delay_max_ms > 0 && d > a->failure_delay_max_ms)
        d = a->failure_delay_max_ms;
    return (uint32_t)d;
}

void
authguard_failure(const struct authguard *g, const struct config_auth *a,
                  const struct ratetable_key *client, const char *user, size_t user_len,
                  uint32_t session_failures, uint64_t now_ms, struct authguard_verdict *out)
{
    *out = (struct authguard_verdict){0};
    uint32_t n = session_failures;
    if (client != NULL && g->clients != NULL) {
        out->ip_failures =
            ratetable_add(g->clients, client, RATE_AUTH_FAILURES, &a->ban_ip, 1, now_ms);
        if (a->ban_ip.count > 0 && out->ip_failures >= a->ban_ip.count && a->ban_time_ms > 0) {
            ratetable_ban(g->clients, client, now_ms + a->ban_time_ms, now_ms);
            out->ip_banned = true;
        }
        if (out->ip_failures > n)
            n = out->ip_failures;
    }
    if (user != NULL && user_len > 0 && g->users != NULL) {
        struct ratetable_key k;
        ratetable_key_user(&k, user, user_len);
        out->familiar =
            client != NULL && familiar_is(g->familiar, &k, client, a->familiar_window_ms, now_ms);
        if (!out->familiar) {
            uint32_t u = ratetable_add(g->users, &k, RATE_AUTH_FAILURES, &a->ban_user, 1, now_ms);
            if (a->ban_user.count > 0 && u >= a->ban_user.count && a->ban_time_ms > 0) {
                ratetable_ban(g->users, &k, now_ms + a->ban_time_ms, now_ms);
                out->user_banned = true;
            }
        }
    }
    out->delay_ms = authguard_delay_ms(a, n);
}

bool
authguard_banned(const struct authguard *g, const struct config_auth *a,
                 const struct ratetable_key *client, const char *user, size_t user_len,
                 uint64_t now_ms)
{
    if (client != NULL && g->clients != NULL && ratetable_banned_for(g->clients, client, now_ms))
        return true;
    if (user == NULL || user_len == 0 || g->users == NULL)
        return false;
    struct ratetable_key k;
    ratetable_key_user(&k, user, user_len);
    if (ratetable_banned_for(g->users, &k, now_ms) == 0)
        return false;
    return client == NULL || !familiar_is(g->familiar, &k, client, a->familiar_window_ms, now_ms);
}

void
authguard_login(const struct authguard *g, const struct ratetable_key *client, const char *user,
                size_t user_len, uint64_t now_ms)
{
    if (client == NULL || user == NULL || user_len == 0)
        return;
    struct ratetable_key k;
    ratetable_key_user(&k, user, user_len);
    familiar_note(g->familiar, &k, client, now_ms);
}

struct authguard *
authguard_new(struct ratetable *clients, size_t users_max, size_t familiar_max)
{
    struct authguard *g = xcalloc(1, sizeof(*g));
    g->clients = clients;
    g->users = ratetable_new(users_max, moat_random_seed());
    g->familiar = familiar_new(familiar_max, moat_random_seed());
    return g;
}

void
authguard_free(struct authguard *g)
{
    if (g == NULL)
        return;
    ratetable_free(g->users);
    familiar_free(g->familiar);
    free(g);
}
