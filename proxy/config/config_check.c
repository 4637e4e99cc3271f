/*
 * config_check.c: the second half of loading, after the whole file was read: each listener gets
 * the global [limits]/[timeouts]/[auth]/[access] with its own overrides on top (so section order
 * does not matter), defaults that depend on other keys are filled in, and the cross-checks run
 * (required keys, backend names, duplicate listen addresses, TLS without a certificate).
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_impl.h"
#include "sendermap.h"

static int
config_seen(const struct section_rec *sec, const char *key)
{
    const struct key_def *k = config_key_find(sec->kind, key);

    MOAT_ASSERT(k != NULL);
    return sec->seen[k - config_keys];
}

static void
config_check_moat(struct config *c)
{
    char host[256];

    if (c->hostname == NULL) {
        if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
            strcpy(host, "localhost");
        host[sizeof(host) - 1] = '\0';
        c->hostname = xstrdup(host);
    }
    if (c->log_file != NULL && strcmp(c->log_file, "stderr") == 0) {
        free(c->log_file);
        c->log_file = NULL;
    }
    for (size_t i = 0; i < c->tls.ncerts; i++) {
        if (c->tls.certs[i].key_file == NULL)
            c->tls.certs[i].key_file = xstrdup(c->tls.certs[i].cert_file);
    }
}

/* The line where key was set in the global section kind, or 0. */
static int
config_global_line(const struct loader *ld, enum section_kind kind, const char *key)
{
    for (size_t i = 0; i < ld->nsecs; i++) {
        if (ld->secs[i].kind == kind && ld->secs[i].name == NULL)
            return config_seen(&ld->secs[i], key);
    }
    return 0;
}

/* A DNS host name: at most 253 characters, dot-separated labels of 1 to 63 letters, digits and
 * hyphens, no label starting or ending with a hyphen. It goes into greetings and refusals. */
static const char *
hostname_problem(const char *h)
{
    size_t n = strlen(h), label = 0;
    if (n == 0 || n > 253)
        return "must be 1 to 253 characters";
    for (size_t i = 0; i <= n; i++) {
        char ch = h[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0)
                return "empty label";
            if (h[i - 1] == '-')
                return "a label ends with '-'";
            label = 0;
            continue;
        }
        bool ldh = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '-';
        if (!ldh)
            return "only letters, digits, '-' and '.' are allowed";
        if (label == 0 && ch == '-')
            return "a label starts with '-'";
        if (++label > 63)
            return "a label is longer than 63 characters";
    }
    return NULL;
}

static void
config_check_global(struct loader *ld)
{
    const struct config *c = ld->config;
    const char *why = hostname_problem(c->hostname);
    if (why != NULL) {
        int line = config_global_line(ld, SEC_MOAT, "hostname");
        if (line != 0)
            config_error(ld, line, "hostname", "not a host name: %s", why);
        else
            config_error(ld, 1, "hostname", "the system's host name is not one (%s): set it here",
                         why);
    }
    uint32_t t = c->tls.ticket_lifetime_ms;
    if (t != 0 && (t < 1000 || t > 3600u * 1000u || t % 1000 != 0)) {
        int line = config_global_line(ld, SEC_TLS, "ticket_lifetime");
        config_error(ld, line ? line : 1, "ticket_lifetime",
                     "must be 0 (off) or whole seconds from 1s to 1h");
    }
}

static char *
config_strdup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* The listener starts from the global sections; its own keys are then replayed on top. */
static void
config_listener_inherit(struct loader *ld, struct section_rec *sec)
{
    const struct config *c = ld->config;
    struct config_listener *l = sec->listener;

    l->limits = c->limits;
    l->timeouts = c->timeouts;
    l->auth_conf = c->auth;
    l->auth_conf.sasldb_path = config_strdup_or_null(c->auth.sasldb_path);
    l->auth_conf.saslauthd_path = config_strdup_or_null(c->auth.saslauthd_path);
    l->auth_conf.mech_list = config_strdup_or_null(c->auth.mech_list);
    l->auth_conf.realm = config_strdup_or_null(c->auth.realm);
    cidr_list_copy(&l->access.allow, &c->access.allow);
    cidr_list_copy(&l->access.deny, &c->access.deny);
    l->access.mode = c->access.mode;
    for (size_t i = 0; i < sec->noverrides; i++) {
        const struct config_override *ov = &sec->overrides[i];
        void *base = NULL;
        switch (ov->key->section) {
        case SEC_LIMITS:
            base = &l->limits;
            break;
        case SEC_TIMEOUTS:
            base = &l->timeouts;
            break;
        case SEC_AUTH:
            base = &l->auth_conf;
            break;
        case SEC_ACCESS:
            base = &l->access;
            break;
        case SEC_MOAT:
        case SEC_TLS:
        case SEC_BACKEND:
        case SEC_LISTENER:
        case SEC_DNS:
        case SEC_CLUSTER:
        case SEC_UNKNOWN:
            MOAT_ASSERT(!"not an inherited section");
        }
        /* The first allow/deny in a listener replaces the global list; later ones append. */
        bool first = sec->seen[ov->key - config_keys] == ov->line;
        config_apply(ld, ov->key, base, ov->value, ov->line, first);
    }
}

static bool
config_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* 0.0.0.0:25 and 192.0.2.1:25 cannot both be bound. */
static bool
config_addr_overlap(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

    if (a->ss_family != AF_INET || b->ss_family != AF_INET || x->sin_port != y->sin_port)
        return false;
    return x->sin_addr.s_addr == htonl(INADDR_ANY) || y->sin_addr.s_addr == htonl(INADDR_ANY);
}

static void
config_check_listen(struct loader *ld, size_t index)
{
    const struct config_listener *l = ld->secs[index].listener;
    char mine[CONFVAL_ADDR_STRLEN], theirs[CONFVAL_ADDR_STRLEN];
    int line = config_seen(&ld->secs[index], "listen");

    if (l->addr_len == 0)
        return;
    confval_addr_format((const struct sockaddr *)&l->addr, mine, sizeof(mine));
    for (size_t i = 0; i < index; i++) {
        const struct section_rec *other = &ld->secs[i];
        if (other->kind != SEC_LISTENER || other->listener->addr_len == 0)
            continue;
        const struct config_listener *o = other->listener;
        if (config_addr_equal(&l->addr, &o->addr)) {
            config_error(ld, line, "listen", "%s already used by listener '%s' (line %d)", mine,
                         o->name, config_seen(other, "listen"));
            return;
        }
        if (config_addr_overlap(&l->addr, &o->addr)) {
            confval_addr_format((const struct sockaddr *)&o->addr, theirs, sizeof(theirs));
            config_error(ld, line, "listen", "%s overlaps %s of listener '%s' (line %d)", mine,
                         theirs, o->name, config_seen(other, "listen"));
            return;
        }
    }
}

/* The sender_login_map file is part of the generation: read it now, report it like a key. */
static void
config_load_sender_map(struct loader *ld, struct section_rec *sec)
{
    struct config_listener *l = sec->listener;
    if (l->sender_login_map == NULL)
        return;
    const char *err = NULL;
    int bad = 0;
    l->sender_map = sender_map_load(l->sender_login_map, &err, &bad);
    if (l->sender_map != NULL)
        return;
    if (bad > 0)
        config_error(ld, config_seen(sec, "sender_login_map"), "sender_login_map",
                     "'%s' line %d: %s", l->sender_login_map, bad, err);
    else
        config_error(ld, config_seen(sec, "sender_login_map"), "sender_login_map",
                     "cannot read '%s': %s", l->sender_login_map, err);
}

static void
config_check_listener(struct loader *ld, size_t index)
{
    struct section_rec *sec = &ld->secs[index];
    struct config_listener *l = sec->listener;
    struct config *c = ld->config;
    static const char *const required[] = {"protocol", "listen", "backend"};

    config_listener_inherit(ld, sec);
    for (size_t i = 0; i < ARRAY_SIZE(required); i++) {
        if (config_seen(sec, required[i]) == 0)
            config_error(ld, sec->line, "listener", "[listener %s] has no '%s'", l->name,
                         required[i]);
    }
    if (config_seen(sec, "auth") == 0)
        l->auth = l->proto != LPROTO_SMTP;
    l->greet_pause_set = config_seen(sec, "greet_pause") != 0;
    if (l->backend_name != NULL) {
        l->backend = config_backend_find(c, l->backend_name);
        if (l->backend == NULL)
            config_error(ld, config_seen(sec, "backend"), "backend", "no [backend %s] section",
                         l->backend_name);
    }
    if (l->tls != LTLS_NONE && c->tls.ncerts == 0) {
        int line = config_seen(sec, "tls");
        config_error(ld, line ? line : sec->line, "tls",
                     "[listener %s] uses tls = %s but [tls] has no certificate", l->name,
                     listener_tls_name(l->tls));
    }
    if (l->proxy_protocol != PROXY_ACCEPT_OFF && l->proxy_trusted.n == 0)
        config_error(ld, config_seen(sec, "proxy_protocol"), "proxy_trusted",
                     "[listener %s] uses proxy_protocol = %s but trusts no balancer", l->name,
                     proxy_accept_name(l->proxy_protocol));
    config_check_listen(ld, index);
    config_load_sender_map(ld, sec);
}

/* The Dovecot master user's password: the file's first line, read now, never logged. */
static void
config_check_master(struct loader *ld, struct section_rec *sec)
{
    struct config_backend *b = sec->backend;
    if (b->master_separator == NULL)
        b->master_separator = xstrdup("*");
    if (b->master_user == NULL && b->master_password_file == NULL)
        return;
    int line = config_seen(sec, "master_user");
    if (b->master_user == NULL || b->master_password_file == NULL || b->master_user[0] == '\0') {
        config_error(ld, line ? line : config_seen(sec, "master_password_file"), "master_user",
                     "[backend %s] master_user and master_password_file go together", b->name);
        return;
    }
    line = config_seen(sec, "master_password_file");
    char pw[1100];
    FILE *f = fopen(b->master_password_file, "re");
    if (f == NULL) {
        config_error(ld, line, "master_password_file", "cannot open %s", b->master_password_file);
        return;
    }
    bool ok = fgets(pw, sizeof(pw), f) != NULL;
    fclose(f);
    size_t n = ok ? strcspn(pw, "\r\n") : 0;
    if (n == 0 || n > SASL_PASS_MAX)
        config_error(ld, line, "master_password_file", "%s: no password on its first line",
                     b->master_password_file);
    else {
        b->master_password = xcalloc(1, n + 1);
        memcpy(b->master_password, pw, n);
    }
    explicit_bzero(pw, sizeof(pw));
}

static void
config_check_backend(struct loader *ld, struct section_rec *sec)
{
    struct config_backend *b = sec->backend;
    const struct config *c = ld->config;

    if (config_seen(sec, "address") == 0)
        config_error(ld, sec->line, "backend", "[backend %s] has no 'address'", b->name);
    if (config_seen(sec, "identity") == 0) {
        b->identity = IDENT_NONE;
        for (const struct config_listener *l = c->listeners; l != NULL; l = l->next) {
            if (l->backend == b) {
                b->identity = l->proto == LPROTO_IMAP ? IDENT_ID : IDENT_XCLIENT;
                break;
            }
        }
    }
    if (b->helo_name == NULL)
        b->helo_name = xstrdup(c->hostname);
    config_check_master(ld, sec);
}

/* The sasl verifier on SMTP tells Postfix the login with XCLIENT LOGIN=: nothing else can. */
static void
config_check_verifier(struct loader *ld, struct section_rec *sec)
{
    const struct config_listener *l = sec->listener;
    if (l->auth_conf.verifier != VERIFIER_SASL || l->backend == NULL)
        return;
    if ((l->proto == LPROTO_SMTP || l->proto == LPROTO_SUBMISSION) &&
        l->backend->identity != IDENT_XCLIENT) {
        int line = config_seen(sec, "verifier");
        config_error(ld, line ? line : sec->line, "verifier",
                     "[listener %s] verifier = sasl needs a backend with identity = xclient",
                     l->name);
    }
}

void
config_check(struct loader *ld)
{
    struct config *c = ld->config;

    config_check_moat(c);
    config_check_global(ld);
    for (size_t i = 0; i < ld->nsecs; i++) {
        if (ld->secs[i].kind == SEC_LISTENER)
            config_check_listener(ld, i);
    }
    for (size_t i = 0; i < ld->nsecs; i++) {
        if (ld->secs[i].kind == SEC_BACKEND)
            config_check_backend(ld, &ld->secs[i]);
    }
    for (size_t i = 0; i < ld->nsecs; i++) {
        if (ld->secs[i].kind == SEC_LISTENER)
            config_check_verifier(ld, &ld->secs[i]);
    }
    config_check_dns(ld);
    if (c->listeners == NULL)
        config_error(ld, 1, "listener", "no [listener NAME] section");
}
