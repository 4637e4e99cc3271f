/*
 * dns.c: the only file that includes <ares.h>. One c-ares channel per worker, driven by the
 * worker's libev loop (socket-state callback -> one ev_io per c-ares socket, ares_timeout -> one
 * ev_timer), a bounded per-worker cache of parsed answers (positive, negative and temporary
 * failures, each with its own lifetime) with in-flight joining, and delivery to waiters that
 * never happens inside dns_lookup(): c-ares may complete a query synchronously, and cache hits are
 * delivered from a zero timer. Pending query entries are never freed while c-ares holds them.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <ev.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "log.h"

#define DNS_MAX_RECORDS 32
#define DNS_TXT_RECORD_MAX 4096 /* one TXT record, chunks joined: longer ones are cut */
#define DNS_SWEEP_S 1.0         /* expired entries are freed at most this often */
#define DNS_PTR_TTL_S 3600.0    /* PTR/TXT/MX replies expose no TTL through c-ares' parsers */

struct dns_entry {
    enum dns_type type;
    char name[DNSNAME_MAX + 2];
    uint32_t hash;
    struct dns_resolver *r;
    struct dns_entry *hnext;
    struct dns_entry *older, *newer;
    bool pending;
    bool sync_done;  /* completed inside ares_query() */
    unsigned nready; /* waiters on the delivery list that point here */
    unsigned busy;   /* being delivered */
    double expires;
    size_t bytes; /* charged to r->bytes: the entry and its answer */
    struct dns_answer answer;
    struct dns_waiter *waiters;
};

struct dns_sock {
    ev_io io;
    struct dns_resolver *r;
    struct dns_sock *next;
};

struct dns_resolver {
    struct ev_loop *loop;
    ares_channel channel;
    ev_timer timer;
    ev_timer deliver;
    struct dns_sock *socks;
    struct dns_entry **buckets;
    size_t nbuckets;
    struct dns_entry *oldest, *newest;
    size_t count, max;
    size_t bytes, max_bytes; /* the cache's memory budget */
    double next_sweep;
    struct dns_waiter *ready;
    double max_ttl_s, negative_ttl_s, tempfail_ttl_s;
    /* reload: a resolver made from an older [dns] lives on, off to the side, while sessions of
     * that generation still use it (users), then frees itself from its reaper timer */
    struct config_dns made_from; /* the values it was made with (strings not kept) */
    char *servers;
    unsigned users;
    struct dns_resolver *retired; /* chain of older resolvers, from the worker's current one */
    struct dns_resolver **slot;
    ev_timer reaper;
};

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static bool ares_ready;

static void
ares_init_once(void)
{
    ares_ready = ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS;
}

const char *
dns_status_name(enum dns_status s)
{
    switch (s) {
    case DNS_OK:
        return "ok";
    case DNS_NONE:
        return "none";
    case DNS_TEMP:
        return "temp";
    }
    return "?";
}

/* --- libev glue --- */

static void
dns_timer_update(struct dns_resolver *r)
{
    struct timeval tv, *t = ares_timeout(r->channel, NULL, &tv);
    ev_timer_stop(r->loop, &r->timer);
    if (t == NULL)
        return;
    ev_timer_set(&r->timer, (double)t->tv_sec + (double)t->tv_usec / 1e6 + 0.001, 0.);
    ev_timer_start(r->loop, &r->timer);
}

static void
on_sock_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct dns_sock *s = io->data;
    struct dns_resolver *r = s->r;
    int fd = io->fd;
    ares_process_fd(r->channel, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    dns_timer_update(r);
}

static void
on_dns_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct dns_resolver *r = t->data;
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_timer_update(r);
}

static void
on_sock_state(void *arg, ares_socket_t fd, int readable, int writable)
{
    struct dns_resolver *r = arg;
    struct dns_sock **pp = &r->socks, *s;
    while ((s = *pp) != NULL && s->io.fd != fd)
        pp = &s->next;
    if (!readable && !writable) {
        if (s != NULL) {
            ev_io_stop(r->loop, &s->io);
            *pp = s->next;
            free(s);
        }
        return;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        s->r = r;
        ev_init(&s->io, on_sock_io);
        s->io.data = s;
        s->next = r->socks;
        r->socks = s;
    }
    ev_io_stop(r->loop, &s->io);
    ev_io_set(&s->io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(r->loop, &s->io);
}

/* --- the cache --- */

static uint32_t
name_hash(enum dns_type t, const char *name)
{
    uint32_t h = 2166136261u ^ (uint32_t)t;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

static void
answer_clear(struct dns_answer *a)
{
    for (size_t i = 0; a->strs != NULL && i < a->n; i++)
        free(a->strs[i]);
    free(a->strs);
    free(a->addrs);
    memset(a, 0, sizeof(*a));
}

static void
age_unlink(struct dns_resolver *r, struct dns_entry *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        r->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        r->newest = e->older;
    e->older = e->newer = NULL;
}

static void
age_push(struct dns_resolver *r, struct dns_entry *e)
{
    e->older = r->newest;
    e->newer = NULL;
    if (r->newest)
        r->newest->newer = e;
    else
        r->oldest = e;
    r->newest = e;
}

/* What an entry costs: itself, its name and its parsed answer. */
size_t
dns_answer_bytes(const struct dns_answer *a)
{
    size_t n = 0;
    if (a->strs != NULL)
        n += DNS_MAX_RECORDS * sizeof(char *);
    for (size_t i = 0; a->strs != NULL && i < a->n; i++)
        n += strlen(a->strs[i]) + 1;
    if (a->addrs != NULL)
        n += a->n * sizeof(struct dns_addr);
    return n;
}

static void
entry_charge(struct dns_resolver *r, struct dns_entry *e)
{
    size_t b = sizeof(*e) + dns_answer_bytes(&e->answer);
    r->bytes = r->bytes - e->bytes + b;
    e->bytes = b;
}

static void
entry_free(struct dns_resolver *r, struct dns_entry *e)
{
    struct dns_entry **pp = &r->buckets[e->hash % r->nbuckets];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    age_unlink(r, e);
    answer_clear(&e->answer);
    r->bytes -= e->bytes;
    free(e);
    r->count--;
}

static bool
entry_idle(const struct dns_entry *e)
{
    return !e->pending && e->nready == 0 && e->busy == 0 && e->waiters == NULL;
}

/* Free what expired (at most every DNS_SWEEP_S), then, for room for one more entry of `want`
 * bytes, drop the oldest entries nobody is waiting on. */
static void
cache_trim(struct dns_resolver *r, double now, size_t want)
{
    if (now >= r->next_sweep) {
        r->next_sweep = now + DNS_SWEEP_S;
        for (struct dns_entry *e = r->oldest, *next; e != NULL; e = next) {
            next = e->newer;
            if (now >= e->expires && entry_idle(e))
                entry_free(r, e);
        }
    }
    struct dns_entry *e = r->oldest;
    while ((r->count >= r->max || r->bytes + want > r->max_bytes) && e != NULL) {
        struct dns_entry *next = e->newer;
        if (entry_idle(e))
            entry_free(r, e);
        e = next;
    }
}

static struct dns_entry *
cache_find(struct dns_resolver *r, enum dns_type t, const char *name, uint32_t h)
{
    for (struct dns_entry *e = r->buckets[h % r->nbuckets]; e != NULL; e = e->hnext)
        if (e->hash == h && e->type == t && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

/* --- answers --- */

static void
parse_addrs(struct dns_entry *e, const unsigned char *abuf, int alen, double *ttl_out)
{
    int n = DNS_MAX_RECORDS, rc;
    struct ares_addrttl v4[DNS_MAX_RECORDS];
    struct ares_addr6ttl v6[DNS_MAX_RECORDS];
    if (e->type == DNS_T_A)
        rc = ares_parse_a_reply(abuf, alen, NULL, v4, &n);
    else
        rc = ares_parse_aaaa_reply(abuf, alen, NULL, v6, &n);
    if (rc != ARES_SUCCESS || n <= 0) {
        e->answer.status = DNS_NONE;
        e->answer.bad_reply = rc != ARES_SUCCESS && rc != ARES_ENODATA;
        return;
    }
    e->answer.addrs = xcalloc((size_t)n, sizeof(struct dns_addr));
    for (int i = 0; i < n; i++) {
        struct dns_addr *a = &e->answer.addrs[i];
        a->family = e->type == DNS_T_A ? AF_INET : AF_INET6;
        if (e->type == DNS_T_A)
            memcpy(a->b, &v4[i].ipaddr, 4);
        else
            memcpy(a->b, &v6[i].ip6addr, 16);
        int ttl = e->type == DNS_T_A ? v4[i].ttl : v6[i].ttl;
        if (i == 0 || ttl < *ttl_out)
            *ttl_out = ttl < 0 ? 0 : ttl;
    }
    e->answer.n = (size_t)n;
}

/* Keep one more string, within the record count and the answer's byte cap; what does not fit
 * marks the answer truncated. */
static void
add_str(struct dns_answer *a, const char *s, size_t len)
{
    size_t kept = 0;
    for (size_t i = 0; i < a->n; i++)
        kept += strlen(a->strs[i]);
    if (a->n >= DNS_MAX_RECORDS || kept + len > DNS_ANSWER_MAX_BYTES) {
        a->truncated = true;
        return;
    }
    if (a->strs == NULL)
        a->strs = xcalloc(DNS_MAX_RECORDS, sizeof(char *));
    char *c = xcalloc(1, len + 1);
    memcpy(c, s, len);
    a->strs[a->n++] = c;
}

static void
parse_ptr(struct dns_entry *e, const unsigned char *abuf, int alen)
{
    struct hostent *h = NULL;
    unsigned char dummy[16] = {0};
    int rc = ares_parse_ptr_reply(abuf, alen, dummy, 4, AF_INET, &h);
    if (rc == ARES_SUCCESS && h != NULL) {
        if (h->h_name)
            add_str(&e->answer, h->h_name, strlen(h->h_name));
        for (char **al = h->h_aliases; al && *al; al++)
            add_str(&e->answer, *al, strlen(*al));
    }
    if (h != NULL)
        ares_free_hostent(h);
    e->answer.bad_reply = rc != ARES_SUCCESS && rc != ARES_ENODATA;
}

static void
parse_txt(struct dns_entry *e, const unsigned char *abuf, int alen)
{
    struct ares_txt_ext *txt = NULL;
    int rc = ares_parse_txt_reply_ext(abuf, alen, &txt);
    char joined[DNS_TXT_RECORD_MAX];
    size_t k = 0;
    bool have = false;
    for (struct ares_txt_ext *t = txt; rc == ARES_SUCCESS && t != NULL; t = t->next) {
        if (t->record_start && have) {
            add_str(&e->answer, joined, k);
            k = 0;
        }
        have = true;
        size_t c = MOAT_MIN(t->length, sizeof(joined) - 1 - k);
        if (c < t->length)
            e->answer.truncated = true;
        memcpy(joined + k, t->txt, c);
        k += c;
    }
    if (have)
        add_str(&e->answer, joined, k);
    if (txt != NULL)
        ares_free_data(txt);
    e->answer.bad_reply = rc != ARES_SUCCESS && rc != ARES_ENODATA;
}

static void
parse_mx(struct dns_entry *e, const unsigned char *abuf, int alen)
{
    struct ares_mx_reply *mx = NULL;
    int rc = ares_parse_mx_reply(abuf, alen, &mx);
    /* selection by preference: small lists, so repeated minimum scans are fine */
    for (int last = -1; rc == ARES_SUCCESS;) {
        int best = 65536;
        for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
            if ((int)m->priority > last && (int)m->priority < best)
                best = m->priority;
        if (best == 65536)
            break;
        for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
            if ((int)m->priority == best)
                add_str(&e->answer, m->host, strlen(m->host));
        last = best;
    }
    if (mx != NULL)
        ares_free_data(mx);
    e->answer.bad_reply = rc != ARES_SUCCESS && rc != ARES_ENODATA;
}

static enum dns_status
status_of(int ares_status)
{
    switch (ares_status) {
    case ARES_SUCCESS:
        return DNS_OK;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_EBADNAME:
    case ARES_EFORMERR:
        return DNS_NONE;
    }
    return DNS_TEMP;
}

static void
entry_fill(struct dns_entry *e, int status, const unsigned char *abuf, int alen)
{
    struct dns_resolver *r = e->r;
    double ttl = r->max_ttl_s;
    answer_clear(&e->answer);
    e->answer.status = status_of(status);
    if (e->answer.status == DNS_OK) {
        switch (e->type) {
        case DNS_T_A:
        case DNS_T_AAAA:
            parse_addrs(e, abuf, alen, &ttl);
            break;
        case DNS_T_PTR:
            parse_ptr(e, abuf, alen);
            break;
        case DNS_T_TXT:
            parse_txt(e, abuf, alen);
            break;
        case DNS_T_MX:
            parse_mx(e, abuf, alen);
            break;
        }
        if (e->answer.n == 0)
            e->answer.status = DNS_NONE;
    }
    if (e->answer.status == DNS_OK && e->type != DNS_T_A && e->type != DNS_T_AAAA)
        ttl = MOAT_MIN(r->max_ttl_s, DNS_PTR_TTL_S);
    if (e->answer.status == DNS_OK)
        ttl = MOAT_MIN(ttl, r->max_ttl_s);
    else
        ttl = e->answer.status == DNS_NONE ? r->negative_ttl_s : r->tempfail_ttl_s;
    e->expires = ev_now(r->loop) + ttl;
    entry_charge(r, e);
}

/* --- delivery --- */

static void
waiter_link(struct dns_waiter **head, struct dns_waiter *w)
{
    w->prev = NULL;
    w->next = *head;
    if (*head)
        (*head)->prev = w;
    *head = w;
}

static void
waiter_unlink(struct dns_waiter **head, struct dns_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        *head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

/* Hand e's answer to w later, from the delivery timer. */
static void
queue_ready(struct dns_resolver *r, struct dns_entry *e, struct dns_waiter *w)
{
    w->entry = e;
    w->ready = true;
    e->nready++;
    waiter_link(&r->ready, w);
    if (!ev_is_active(&r->deliver)) {
        ev_timer_set(&r->deliver, 0., 0.);
        ev_timer_start(r->loop, &r->deliver);
    }
}

static void
deliver_one(struct dns_entry *e, struct dns_waiter *w)
{
    w->entry = NULL;
    w->ready = false;
    e->busy++;
    w->done(w, &e->answer);
    e->busy--;
}

static void
on_deliver(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct dns_resolver *r = t->data;
    while (r->ready != NULL) {
        struct dns_waiter *w = r->ready;
        struct dns_entry *e = w->entry;
        waiter_unlink(&r->ready, w);
        e->nready--;
        deliver_one(e, w);
    }
}

static void
on_ares(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_entry *e = arg;
    struct dns_resolver *r = e->r;
    if (status == ARES_EDESTRUCTION)
        return;
    entry_fill(e, status, abuf, alen);
    e->pending = false;
    while (e->waiters != NULL) {
        struct dns_waiter *w = e->waiters;
        waiter_unlink(&e->waiters, w);
        if (e->sync_done)
            queue_ready(r, e, w);
        else
            deliver_one(e, w);
    }
}

static const int qtypes[] = {
    [DNS_T_A] = 1, [DNS_T_AAAA] = 28, [DNS_T_PTR] = 12, [DNS_T_TXT] = 16, [DNS_T_MX] = 15};

static void
entry_query(struct dns_resolver *r, struct dns_entry *e)
{
    e->pending = true;
    e->sync_done = true; /* until ares_query returns, completion is synchronous */
    ares_query(r->channel, e->name, 1 /* C_IN */, qtypes[e->type], on_ares, e);
    e->sync_done = false;
    dns_timer_update(r);
}

void
dns_lookup(struct dns_resolver *r, enum dns_type t, const char *name, struct dns_waiter *w,
           dns_done_fn done)
{
    char key[DNSNAME_MAX + 2];
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.')
        n--;
    MOAT_ASSERT(n < sizeof(key)); /* callers pass names they built or validated (<= 253) */
    for (size_t i = 0; i < n; i++)
        key[i] = (char)tolower((unsigned char)name[i]);
    key[n] = '\0';
    uint32_t h = name_hash(t, key);
    MOAT_ASSERT(!dns_waiting(w));
    w->done = done;
    struct dns_entry *e = cache_find(r, t, key, h);
    if (e != NULL && !e->pending && ev_now(r->loop) < e->expires) {
        queue_ready(r, e, w);
        return;
    }
    if (e == NULL) {
        cache_trim(r, ev_now(r->loop), sizeof(*e));
        e = xcalloc(1, sizeof(*e));
        e->type = t;
        memcpy(e->name, key, n + 1);
        e->hash = h;
        e->r = r;
        e->hnext = r->buckets[h % r->nbuckets];
        r->buckets[h % r->nbuckets] = e;
        r->count++;
        entry_charge(r, e);
    } else {
        age_unlink(r, e);
    }
    age_push(r, e);
    w->entry = e;
    w->ready = false;
    waiter_link(&e->waiters, w);
    if (!e->pending)
        entry_query(r, e);
}

bool
dns_waiting(const struct dns_waiter *w)
{
    return w->entry != NULL;
}

void
dns_cancel(struct dns_waiter *w)
{
    struct dns_entry *e = w->entry;
    if (e == NULL)
        return;
    if (w->ready) {
        waiter_unlink(&e->r->ready, w);
        e->nready--;
    } else {
        waiter_unlink(&e->waiters, w);
    }
    w->entry = NULL;
    w->ready = false;
}

/* --- setup and reload --- */

static void on_reaper(struct ev_loop *loop, ev_timer *t, int revents);

/* A worker while serving: a failure here is logged and the caller goes without DNS checks. */
static struct dns_resolver *
resolver_new(struct ev_loop *loop, const struct config_dns *d)
{
    pthread_once(&ares_once, ares_init_once);
    if (!ares_ready) {
        log_msg(LOG_ERROR, EV_DNS_UNAVAILABLE, "error=\"c-ares library init failed\"");
        return NULL;
    }
    struct dns_resolver *r = xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->max = d->cache_size > 0 ? d->cache_size : 1;
    r->max_bytes = d->cache_bytes > 0 ? d->cache_bytes : DNS_CACHE_BYTES_MIN;
    r->nbuckets = 1024;
    r->buckets = xcalloc(r->nbuckets, sizeof(*r->buckets));
    r->max_ttl_s = d->cache_max_ttl_ms / 1000.0;
    r->negative_ttl_s = d->negative_ttl_ms / 1000.0;
    r->tempfail_ttl_s = d->tempfail_ttl_ms / 1000.0;
    r->made_from = *d;
    r->servers = d->servers ? xstrdup(d->servers) : NULL;
    ev_init(&r->reaper, on_reaper);
    r->reaper.data = r;
    ev_init(&r->timer, on_dns_timer);
    r->timer.data = r;
    ev_init(&r->deliver, on_deliver);
    r->deliver.data = r;
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = r;
    o.timeout = (int)d->timeout_ms;
    o.tries = (int)d->tries;
    o.lookups = (char *)"b";
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS |
               ARES_OPT_FLAGS;
    int rc = ares_init_options(&r->channel, &o, mask);
    if (rc != ARES_SUCCESS) {
        log_msg(LOG_ERROR, EV_DNS_UNAVAILABLE, "error=\"cannot create a channel: %s\"",
                ares_strerror(rc));
        free(r->servers);
        free(r->buckets);
        free(r);
        return NULL;
    }
    if (d->servers != NULL) {
        rc = ares_set_servers_ports_csv(r->channel, d->servers);
        if (rc != ARES_SUCCESS)
            log_msg(LOG_WARN, EV_DNS_SERVERS_BAD, "servers=\"%s\" error=\"%s\"", d->servers,
                    ares_strerror(rc));
    }
    return r;
}

static bool
resolver_matches(const struct dns_resolver *r, const struct config_dns *d)
{
    const struct config_dns *m = &r->made_from;
    bool same_servers =
        (r->servers == NULL && d->servers == NULL) ||
        (r->servers != NULL && d->servers != NULL && strcmp(r->servers, d->servers) == 0);
    return same_servers && m->timeout_ms == d->timeout_ms && m->tries == d->tries &&
           m->cache_size == d->cache_size && m->cache_bytes == d->cache_bytes &&
           m->cache_max_ttl_ms == d->cache_max_ttl_ms && m->negative_ttl_ms == d->negative_ttl_ms &&
           m->tempfail_ttl_ms == d->tempfail_ttl_ms;
}

static void resolver_free_one(struct dns_resolver *r);

/* A retired resolver nobody uses any more frees itself. */
static void
on_reaper(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct dns_resolver *r = t->data;
    if (r->users > 0)
        return;
    struct dns_resolver *p = *r->slot;
    while (p->retired != r)
        p = p->retired;
    p->retired = r->retired;
    resolver_free_one(r);
}

struct dns_resolver *
dns_resolver_get(struct ev_loop *loop, struct dns_resolver **slot, const struct config_dns *d)
{
    struct dns_resolver *r = *slot;
    if (r != NULL && !resolver_matches(r, d)) {
        /* a reload changed [dns]: new sessions get a new resolver; the old one finishes the
         * queries of the sessions that still hold it */
        struct dns_resolver *n = resolver_new(loop, d);
        if (n == NULL)
            return NULL;
        n->retired = r;
        r->slot = slot;
        ev_timer_set(&r->reaper, 1., 1.);
        ev_timer_start(r->loop, &r->reaper);
        *slot = r = n;
    }
    if (r == NULL)
        *slot = r = resolver_new(loop, d);
    if (r == NULL)
        return NULL;
    r->users++;
    return r;
}

void
dns_resolver_put(struct dns_resolver *r)
{
    MOAT_ASSERT(r->users > 0);
    r->users--;
}

void
dns_resolver_free(struct dns_resolver *r)
{
    while (r != NULL) {
        struct dns_resolver *older = r->retired;
        resolver_free_one(r);
        r = older;
    }
}

static void
resolver_free_one(struct dns_resolver *r)
{
    ev_timer_stop(r->loop, &r->reaper);
    ares_destroy(r->channel); /* EDESTRUCTION callbacks: ignored */
    ev_timer_stop(r->loop, &r->timer);
    ev_timer_stop(r->loop, &r->deliver);
    while (r->socks != NULL) {
        struct dns_sock *s = r->socks;
        r->socks = s->next;
        ev_io_stop(r->loop, &s->io);
        free(s);
    }
    while (r->oldest != NULL)
        entry_free(r, r->oldest);
    free(r->buckets);
    free(r->servers);
    free(r);
}

/* --- for the unit tests --- */

struct dns_resolver *
dns_resolver_new_test(struct ev_loop *loop, const struct config_dns *d)
{
    return resolver_new(loop, d);
}

void
dns_cache_put_test(struct dns_resolver *r, enum dns_type t, const char *name,
                   const char *const *strs, size_t n, double now)
{
    uint32_t h = name_hash(t, name);
    struct dns_entry *e = cache_find(r, t, name, h);
    if (e == NULL) {
        cache_trim(r, now, sizeof(*e));
        e = xcalloc(1, sizeof(*e));
        e->type = t;
        snprintf(e->name, sizeof(e->name), "%s", name);
        e->hash = h;
        e->r = r;
        e->hnext = r->buckets[h % r->nbuckets];
        r->buckets[h % r->nbuckets] = e;
        r->count++;
    } else {
        age_unlink(r, e);
    }
    age_push(r, e);
    answer_clear(&e->answer);
    e->answer.status = DNS_OK;
    for (size_t i = 0; i < n; i++)
        add_str(&e->answer, strs[i], strlen(strs[i]));
    e->expires = now + (t == DNS_T_A ? r->max_ttl_s : MOAT_MIN(r->max_ttl_s, DNS_PTR_TTL_S));
    entry_charge(r, e);
}

bool
dns_cache_has_test(struct dns_resolver *r, enum dns_type t, const char *name)
{
    return cache_find(r, t, name, name_hash(t, name)) != NULL;
}

void
dns_cache_stats(const struct dns_resolver *r, size_t *count, size_t *bytes)
{
    *count = r->count;
    *bytes = r->bytes;
}
