/*
 * ratetable.c: the bounded per-client counter table behind admission control and bans. A fixed
 * array of entries chained from a power-of-two bucket array (keyed, seeded hash), a free list,
 * and CLOCK eviction over entries without live sessions or bans, so an address sprayer cannot
 * grow memory. One mutex guards everything. Never reads the clock: time is an argument.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratetable.h"

#define NIL (-1)

/* Sliding window, approximated from the previous and the current fixed window. */
struct rt_window {
    uint64_t start_ms; /* start of the current window; 0 = never used */
    uint32_t cur;
    uint32_t prev;
};

struct rt_entry {
    struct ratetable_key key;
    bool used;
    bool ref;     /* CLOCK: touched since the hand last passed */
    int32_t next; /* bucket chain, or the free list */
    uint32_t concurrent;
    uint64_t banned_until_ms;
    struct rt_window w[RATE_KINDS];
};

struct ratetable {
    pthread_mutex_t lock;
    struct rt_entry *entries;
    size_t capacity;
    size_t count;
    int32_t *buckets;
    size_t nbuckets; /* power of two */
    int32_t free_head;
    size_t hand;
    uint64_t seed;
};

static const char *const verdict_names[] = {
    [RT_OK] = "ok",     [RT_CONCURRENT] = "concurrent", [RT_RATE] = "rate", [RT_BANNED] = "banned",
    [RT_FULL] = "full",
};

const char *
ratetable_verdict_name(enum ratetable_verdict v)
{
    return (size_t)v < ARRAY_SIZE(verdict_names) ? verdict_names[v] : "?";
}

struct ratetable *
ratetable_new(size_t capacity, uint64_t seed)
{
    MOAT_ASSERT(capacity >= 1 && capacity < INT32_MAX / 4);
    struct ratetable *t = xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    t->capacity = capacity;
    t->entries = xcalloc(capacity, sizeof(*t->entries));
    t->nbuckets = 1;
    while (t->nbuckets < capacity * 2)
        t->nbuckets <<= 1;
    t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
    for (size_t i = 0; i < t->nbuckets; i++)
        t->buckets[i] = NIL;
    for (size_t i = 0; i < capacity; i++)
        t->entries[i].next = i + 1 < capacity ? (int32_t)(i + 1) : NIL;
    t->free_head = 0;
    t->seed = seed;
    return t;
}

void
ratetable_free(struct ratetable *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t->entries);
    free(t->buckets);
    free(t);
}

/* --- keys --- */

void
ratetable_key_addr(struct ratetable_key *k, const struct sockaddr *sa, unsigned v6_prefix)
{
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;
        k->bytes[0] = RTKEY_IPV4;
        memcpy(k->bytes + 1, &a->sin_addr, 4);
        k->len = 5;
        return;
    }
    if (sa->sa_family != AF_INET6) {
        k->len = 1; /* every unknown family shares one key */
        return;
    }
    const struct sockaddr_in6 *a = (const void *)sa;
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
        k->bytes[0] = RTKEY_IPV4;
        memcpy(k->bytes + 1, &a->sin6_addr.s6_addr[12], 4);
        k->len = 5;
        return;
    }
    if (v6_prefix < 1 || v6_prefix > 128)
        v6_prefix = 64;
    k->bytes[0] = RTKEY_IPV6;
    k->bytes[1] = (uint8_t)v6_prefix;
    for (unsigned i = 0; i < 16; i++) {
        unsigned bits = v6_prefix > i * 8 ? v6_prefix - i * 8 : 0;
        uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
        k->bytes[2 + i] = a->sin6_addr.s6_addr[i] & mask;
    }
    k->len = 18;
}

static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t
fnv64(const uint8_t *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void
ratetable_key_user(struct ratetable_key *k, const char *name, size_t len)
{
    memset(k, 0, sizeof(*k));
    k->bytes[0] = RTKEY_USER;
    uint64_t a = mix64(fnv64((const uint8_t *)name, len, 0xcbf29ce484222325ull));
    uint64_t b = mix64(fnv64((const uint8_t *)name, len, 0x84222325cbf29ce4ull) ^ len);
    memcpy(k->bytes + 1, &a, 8);
    memcpy(k->bytes + 9, &b, 8);
    k->len = 17;
}

const char *
ratetable_key_format(const struct ratetable_key *k, char *buf, size_t size)
{
    char text[INET6_ADDRSTRLEN] = "?";
    if (k->len == 5 && k->bytes[0] == RTKEY_IPV4) {
        inet_ntop(AF_INET, k->bytes + 1, text, sizeof(text));
        snprintf(buf, size, "%s", text);
    } else if (k->len == 18 && k->bytes[0] == RTKEY_IPV6) {
        inet_ntop(AF_INET6, k->bytes + 2, text, sizeof(text));
        snprintf(buf, size, "%s/%u", text, (unsigned)k->bytes[1]);
    } else if (k->len == 17 && k->bytes[0] == RTKEY_USER) {
        uint64_t a;
        memcpy(&a, k->bytes + 1, 8);
        snprintf(buf, size, "user:%016llx", (unsigned long long)a);
    } else {
        snprintf(buf, size, "?");
    }
    return buf;
}

/* --- the table (lock held) --- */

static size_t
bucket_of(const struct ratetable *t, const struct ratetable_key *k)
{
    return (size_t)(mix64(fnv64(k->bytes, k->len, t->seed ^ 0xcbf29ce484222325ull)) &
                    (t->nbuckets - 1));
}

static int32_t
find(struct ratetable *t, const struct ratetable_key *k)
{
    for (int32_t i = t->buckets[bucket_of(t, k)]; i != NIL; i = t->entries[i].next) {
        const struct rt_entry *e = &t->entries[i];
        if (e->key.len == k->len && memcmp(e->key.bytes, k->bytes, k->len) == 0)
            return i;
    }
    return NIL;
}

static void
unlink_entry(struct ratetable *t, int32_t idx)
{
    struct rt_entry *e = &t->entries[idx];
    int32_t *p = &t->buckets[bucket_of(t, &e->key)];
    while (*p != idx) {
        MOAT_ASSERT(*p != NIL);
        p = &t->entries[*p].next;
    }
    *p = e->next;
    memset(e, 0, sizeof(*e));
    t->count--;
}

/* CLOCK over the entries: the first one without live sessions or a ban, not touched since the
 * hand last passed. NIL when every entry is pinned. */
static int32_t
evict_one(struct ratetable *t, uint64_t now_ms)
{
    for (size_t step = 0; step < 2 * t->capacity; step++) {
        size_t i = t->hand;
        t->hand = (t->hand + 1) % t->capacity;
        struct rt_entry *e = &t->entries[i];
        if (!e->used || e->concurrent > 0 || e->banned_until_ms > now_ms)
            continue;
        if (e->ref) {
            e->ref = false;
            continue;
        }
        unlink_entry(t, (int32_t)i);
        return (int32_t)i;
    }
    return NIL;
}

/* The entry of k, made (evicting if need be) when create is set; NULL if none. */
static struct rt_entry *
lookup(struct ratetable *t, const struct ratetable_key *k, bool create, uint64_t now_ms)
{
    int32_t i = find(t, k);
    if (i != NIL) {
        t->entries[i].ref = true;
        return &t->entries[i];
    }
    if (!create)
        return NULL;
    if (t->free_head != NIL) {
        i = t->free_head;
        t->free_head = t->entries[i].next;
    } else {
        i = evict_one(t, now_ms);
        if (i == NIL)
            return NULL;
    }
    struct rt_entry *e = &t->entries[i];
    memset(e, 0, sizeof(*e));
    e->key = *k;
    e->used = true;
    e->ref = true;
    size_t b = bucket_of(t, k);
    e->next = t->buckets[b];
    t->buckets[b] = i;
    t->count++;
    return e;
}

/* Move the window forward to now; returns the estimated events in the last window_ms. */
static uint32_t
window_count(struct rt_window *w, uint32_t window_ms, uint64_t now_ms)
{
    if (window_ms == 0)
        return 0;
    if (w->start_ms == 0 || now_ms >= w->start_ms + 2ull * window_ms || now_ms < w->start_ms) {
        w->start_ms = now_ms ? now_ms : 1;
        w->cur = w->prev = 0;
        return 0;
    }
    if (now_ms >= w->start_ms + window_ms) {
        w->prev = w->cur;
        w->cur = 0;
        w->start_ms += window_ms;
    }
    uint64_t elapsed = now_ms - w->start_ms;
    uint64_t weighted = (uint64_t)w->prev * (window_ms - elapsed) / window_ms;
    uint64_t total = weighted + w->cur;
    return total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
}

static bool
over_rate(struct rt_entry *e, enum rate_kind kind, const struct rate *rate, uint32_t n,
          uint64_t now_ms)
{
    if (rate == NULL || rate->count == 0)
        return false;
    uint64_t have = window_count(&e->w[kind], rate->window_ms, now_ms);
    return have + n > rate->count;
}

static void
count_events(struct rt_entry *e, enum rate_kind kind, const struct rate *rate, uint32_t n,
             uint64_t now_ms)
{
    if (rate == NULL || rate->count == 0)
        return;
    window_count(&e->w[kind], rate->window_ms, now_ms);
    e->w[kind].cur = e->w[kind].cur > UINT32_MAX - n ? UINT32_MAX : e->w[kind].cur + n;
}

/* --- the API --- */

enum ratetable_verdict
ratetable_connect(struct ratetable *t, const struct ratetable_key *k, uint32_t max_concurrent,
                  const struct rate *rate, bool force, uint64_t now_ms)
{
    enum ratetable_verdict v = RT_OK;
    pthread_mutex_lock(&t->lock);
    struct rt_entry *e = lookup(t, k, true, now_ms);
    if (e == NULL) {
        pthread_mutex_unlock(&t->lock);
        return RT_FULL;
    }
    if (e->banned_until_ms > now_ms)
        v = RT_BANNED;
    else if (max_concurrent > 0 && e->concurrent >= max_concurrent)
        v = RT_CONCURRENT;
    else if (over_rate(e, RATE_CONNECTIONS, rate, 1, now_ms))
        v = RT_RATE;
    if (v == RT_OK || force) {
        e->concurrent++;
        count_events(e, RATE_CONNECTIONS, rate, 1, now_ms);
    }
    pthread_mutex_unlock(&t->lock);
    return v;
}

void
ratetable_release(struct ratetable *t, const struct ratetable_key *k, uint64_t now_ms)
{
    pthread_mutex_lock(&t->lock);
    struct rt_entry *e = lookup(t, k, false, now_ms);
    if (e != NULL && e->concurrent > 0)
        e->concurrent--;
    pthread_mutex_unlock(&t->lock);
}

enum ratetable_verdict
ratetable_check(struct ratetable *t, const struct ratetable_key *k, enum rate_kind kind,
                const struct rate *rate, uint32_t n, uint64_t now_ms)
{
    MOAT_ASSERT(kind < RATE_KINDS);
    if (rate == NULL || rate->count == 0)
        return RT_OK;
    pthread_mutex_lock(&t->lock);
    struct rt_entry *e = lookup(t, k, false, now_ms);
    bool over = e != NULL ? over_rate(e, kind, rate, n, now_ms) : n > rate->count;
    pthread_mutex_unlock(&t->lock);
    return over ? RT_RATE : RT_OK;
}

enum ratetable_verdict
ratetable_take(struct ratetable *t, const struct ratetable_key *k, enum rate_kind kind,
               const struct rate *rate, uint32_t n, bool force, uint64_t now_ms)
{
    MOAT_ASSERT(kind < RATE_KINDS);
    if (rate == NULL || rate->count == 0)
        return RT_OK;
    pthread_mutex_lock(&t->lock);
    struct rt_entry *e = lookup(t, k, true, now_ms);
    if (e == NULL) {
        pthread_mutex_unlock(&t->lock);
        return RT_FULL;
    }
    enum ratetable_verdict v = over_rate(e, kind, rate, n, now_ms) ? RT_RATE : RT_OK;
    if (v == RT_OK || force)
        count_events(e, kind, rate, n, now_ms);
    pthread_mutex_unlock(&t->lock);
    return v;
}

uint32_t
ratetable_add(struct ratetable *t, const struct ratetable_key *k, enum rate_kind kind,
              const struct rate *rate, uint32_t n, uint64_t now_ms)
{
    MOAT_ASSERT(kind < RATE_KINDS);
    if (rate == NULL || rate->count == 0)
        return 0;
    uint32_t have = 0;
    pthread_mutex_lock(&t->lock);
    struct rt_entry *e = lookup(t, k, true, now_ms);
    if (e != NULL) {
        count_events(e, kind, rate, n, now_ms);
        have = window_count(&e->w[kind], rate->window_ms, now_ms);
    }
    pthread_mutex_unlock(&t->lock);
    return have;
}

void
ratetable_ban(struct ratetable *t, const struct ratetable_key *k, uint64_t until_ms,
              uint64_t now_ms)
{
    pthread_mutex_lock(&t->lock);
    struct rt_entry *e = lookup(t, k, true, now_ms);
    if (e != NULL && until_ms > e->banned_until_ms)
        e->banned_until_ms = until_ms;
    pthread_mutex_unlock(&t->lock);
}

uint64_t
ratetable_banned_for(struct ratetable *t, const struct ratetable_key *k, uint64_t now_ms)
{
    uint64_t left = 0;
    pthread_mutex_lock(&t->lock);
    struct rt_entry *e = lookup(t, k, false, now_ms);
    if (e != NULL && e->banned_until_ms > now_ms)
        left = e->banned_until_ms - now_ms;
    pthread_mutex_unlock(&t->lock);
    return left;
}

size_t
ratetable_count(struct ratetable *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t
ratetable_capacity(const struct ratetable *t)
{
    return t->capacity;
}

uint32_t
ratetable_concurrent(struct ratetable *t, const struct ratetable_key *k)
{
    pthread_mutex_lock(&t->lock);
    struct rt_entry *e = lookup(t, k, false, 0);
    uint32_t n = e != NULL ? e->concurrent : 0;
    pthread_mutex_unlock(&t->lock);
    return n;
}
