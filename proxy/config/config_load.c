/*
 * config_load.c: loads moat's INI file into one immutable, refcounted struct config (config.h),
 * and frees it with the last reference. libinih splits lines; our reader hands it one line at a
 * time, so the reader's count is every key's line and the reader also notes each [section]
 * header (inih reports none). Values are parsed by config_keys.c, cross-checks done by
 * config_check.c. Every problem is collected, none stops the load. Not thread-safe: inih's
 * options are process globals; load from one thread at a time.
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "config_impl.h"
#include "sendermap.h"

#define CONFIG_FILE_MAX (16u << 20)
#define CONFIG_LINE_MAX 4096

static const struct {
    const char *name;
    enum section_kind kind;
    bool named;
} section_types[] = {
    {"moat", SEC_MOAT, false},      {"tls", SEC_TLS, false},
    {"limits", SEC_LIMITS, false},  {"timeouts", SEC_TIMEOUTS, false},
    {"auth", SEC_AUTH, false},      {"access", SEC_ACCESS, false},
    {"backend", SEC_BACKEND, true}, {"listener", SEC_LISTENER, true},
    {"dns", SEC_DNS, false},        {"cluster", SEC_CLUSTER, false},
};

static bool
config_name_ok(const char *name)
{
    if (*name == '\0' || strlen(name) > CONFIG_NAME_MAX)
        return false;
    for (const char *p = name; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return false;
    }
    return true;
}

static struct section_rec *
section_add(struct loader *ld, enum section_kind kind, const char *name, int line)
{
    struct section_rec *sec;

    ld->secs = xrealloc(ld->secs, (ld->nsecs + 1) * sizeof(*ld->secs));
    sec = &ld->secs[ld->nsecs++];
    memset(sec, 0, sizeof(*sec));
    sec->kind = kind;
    sec->name = name ? xstrdup(name) : NULL;
    sec->line = line;
    sec->seen = xcalloc(config_nkeys, sizeof(*sec->seen));
    return sec;
}

static struct section_rec *
section_find(struct loader *ld, enum section_kind kind, const char *name)
{
    for (size_t i = 0; i < ld->nsecs; i++) {
        struct section_rec *sec = &ld->secs[i];
        if (sec->kind != kind)
            continue;
        if ((sec->name == NULL && name == NULL) ||
            (sec->name != NULL && name != NULL && strcmp(sec->name, name) == 0))
            return sec;
    }
    return NULL;
}

/* Create the listener or backend a named section describes, with its table defaults. */
static void
section_make_object(struct loader *ld, struct section_rec *sec)
{
    struct config *c = ld->config;

    if (sec->kind == SEC_LISTENER) {
        struct config_listener *l = xcalloc(1, sizeof(*l)), **tail = &c->listeners;
        l->name = xstrdup(sec->name);
        l->line = sec->line;
        config_apply_defaults(ld, SEC_LISTENER, l);
        while (*tail != NULL)
            tail = &(*tail)->next;
        *tail = l;
        sec->listener = l;
    } else if (sec->kind == SEC_BACKEND) {
        struct config_backend *b = xcalloc(1, sizeof(*b)), **tail = &c->backends;
        b->name = xstrdup(sec->name);
        b->line = sec->line;
        config_apply_defaults(ld, SEC_BACKEND, b);
        while (*tail != NULL)
            tail = &(*tail)->next;
        *tail = b;
        sec->backend = b;
    }
}

/* "[type name]" was seen at the current line; raw is what is between the brackets. */
static void
section_open(struct loader *ld, char *raw)
{
    char shown[CONFIG_NAME_MAX + 8], *type = raw, *name;
    size_t i;

    while (isspace((unsigned char)*type))
        type++;
    name = type + strcspn(type, " \t");
    if (*name != '\0')
        *name++ = '\0';
    name += strspn(name, " \t");
    for (i = strlen(name); i > 0 && isspace((unsigned char)name[i - 1]); i--)
        name[i - 1] = '\0';
    ld->cur = NULL;
    for (i = 0; i < ARRAY_SIZE(section_types) && strcmp(section_types[i].name, type) != 0; i++)
        ;
    if (i == ARRAY_SIZE(section_types)) {
        config_error(ld, ld->line, *type ? type : "section", "unknown section [%s]",
                     config_show(shown, sizeof(shown), type));
        ld->cur = section_add(ld, SEC_UNKNOWN, NULL, ld->line);
        return;
    }
    if (!section_types[i].named && *name != '\0') {
        config_error(ld, ld->line, type, "[%s] takes no name", type);
        name = "";
    }
    if (section_types[i].named && !config_name_ok(name)) {
        config_error(ld, ld->line, type,
                     "[%s NAME] needs a name of letters, digits, '.', '_' or '-' (got '%s')", type,
                     config_show(shown, sizeof(shown), name));
        ld->cur = section_add(ld, SEC_UNKNOWN, NULL, ld->line);
        return;
    }
    const char *key_name = section_types[i].named ? name : NULL;
    struct section_rec *first = section_find(ld, section_types[i].kind, key_name);
    if (first != NULL) {
        if (key_name != NULL)
            config_error(ld, ld->line, type, "duplicate section [%s %s] (first at line %d)", type,
                         name, first->line);
        else
            config_error(ld, ld->line, type, "duplicate section [%s] (first at line %d)", type,
                         first->line);
    }
    if (first != NULL && key_name != NULL) {
        ld->cur = section_add(ld, SEC_UNKNOWN, NULL, ld->line);
        return;
    }
    ld->cur = section_add(ld, section_types[i].kind, key_name, ld->line);
    section_make_object(ld, ld->cur);
}

/* If line is a "[section]" header as inih will read it, open that section. */
static void
config_note_header(struct loader *ld, const char *line)
{
    const char *p = line, *end;

    if (ld->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '[')
        return;
    end = strchr(p + 1, ']');
    if (end == NULL)
        return; /* inih reports the syntax error */
    for (const char *q = p + 2; q < end; q++) {
        if ((*q == ';' || *q == '#') && isspace((unsigned char)q[-1]))
            return; /* inih sees a comment before ']': a syntax error */
    }
    /* section_open cuts its copy apart; inih still has to read the line as it was */
    char *raw = xcalloc(1, (size_t)(end - p));
    memcpy(raw, p + 1, (size_t)(end - p - 1));
    section_open(ld, raw);
    free(raw);
}

/* inih's fgets-style reader: exactly one line per call, so inih's count and ours agree. */
static char *
config_read_line(char *str, int num, void *stream)
{
    struct loader *ld = stream;
    const char *p, *nl;
    size_t n;

    if (ld->pos >= ld->len || num < 2)
        return NULL;
    p = ld->text + ld->pos;
    nl = memchr(p, '\n', ld->len - ld->pos);
    n = nl ? (size_t)(nl - p) : ld->len - ld->pos;
    ld->pos += n + (nl ? 1 : 0);
    ld->line++;
    if (n + 2 > (size_t)num || memchr(p, '\0', n) != NULL) {
        if (!ld->syntax_pass)
            config_error(ld, ld->line, "syntax",
                         n + 2 > (size_t)num ? "line longer than %d characters"
                                             : "NUL byte in line (limit %d)",
                         num - 2);
        strcpy(str, "\n");
        return str;
    }
    memcpy(str, p, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    if (!ld->syntax_pass)
        config_note_header(ld, str);
    return str;
}

static void
config_add_override(struct section_rec *sec, const struct key_def *k, const char *value, int line)
{
    sec->overrides = xrealloc(sec->overrides, (sec->noverrides + 1) * sizeof(*sec->overrides));
    sec->overrides[sec->noverrides].key = k;
    sec->overrides[sec->noverrides].value = xstrdup(value);
    sec->overrides[sec->noverrides].line = line;
    sec->noverrides++;
}

static void *
config_section_base(struct config *c, struct section_rec *sec)
{
    switch (sec->kind) {
    case SEC_MOAT:
        return c;
    case SEC_TLS:
        return &c->tls;
    case SEC_LIMITS:
        return &c->limits;
    case SEC_TIMEOUTS:
        return &c->timeouts;
    case SEC_AUTH:
        return &c->auth;
    case SEC_ACCESS:
        return &c->access;
    case SEC_BACKEND:
        return sec->backend;
    case SEC_LISTENER:
        return sec->listener;
    case SEC_DNS:
        return &c->dns;
    case SEC_CLUSTER:
        return &c->cluster;
    case SEC_UNKNOWN:
        break;
    }
    return NULL;
}

/* A listener may name any key of [limits], [timeouts], [auth] or [access]. */
static const struct key_def *
config_listener_key(const char *key, bool *override_out)
{
    static const enum section_kind inherited[] = {SEC_LIMITS, SEC_TIMEOUTS, SEC_AUTH, SEC_ACCESS};
    const struct key_def *k = config_key_find(SEC_LISTENER, key);

    *override_out = false;
    for (size_t i = 0; k == NULL && i < ARRAY_SIZE(inherited); i++) {
        k = config_key_find(inherited[i], key);
        *override_out = k != NULL;
    }
    return k;
}

static int
config_on_key(void *user, const char *section, const char *key, const char *value)
{
    struct loader *ld = user;
    struct section_rec *sec = ld->cur;
    const struct key_def *k;
    bool override = false;

    if (ld->syntax_pass)
        return 1;
    if (sec == NULL) {
        config_error(ld, ld->line, key, "not inside a [section]");
        return 1;
    }
    if (sec->kind == SEC_UNKNOWN)
        return 1;
    if (sec->kind == SEC_LISTENER)
        k = config_listener_key(key, &override);
    else
        k = config_key_find(sec->kind, key);
    if (k == NULL) {
        if (sec->name != NULL)
            config_error(ld, ld->line, key, "unknown key in [%s %s]",
                         config_section_name(sec->kind), sec->name);
        else
            config_error(ld, ld->line, key, "unknown key in [%s]", config_section_name(sec->kind));
        return 1;
    }
    int *seen = &sec->seen[k - config_keys];
    if (*seen != 0 && !(k->flags & KF_REPEAT)) {
        config_error(ld, ld->line, k->key, "already set at line %d", *seen);
        return 1;
    }
    if (*seen == 0)
        *seen = ld->line;
    if (override)
        config_add_override(sec, k, value, ld->line);
    else
        config_apply(ld, k, config_section_base(ld->config, sec), value, ld->line, false);
    (void)section; /* inih truncates long names; ours come from the header line */
    return 1;
}

/* inih reports only its first syntax error; read on from the line after it until none is left. */
static void
config_parse(struct loader *ld)
{
    int bad, skip = 0;

    ini_allow_multiline = false;
    ini_allow_bom = true;
    ini_allow_inline_comments = true;
    ini_inline_comment_prefixes = ";#";
    ini_start_comment_prefixes = ";#";
    ini_stop_on_first_error = false;
    ini_allow_no_value = false;
    ini_max_line = CONFIG_LINE_MAX;
    bad = ini_parse_stream(config_read_line, ld, config_on_key, ld);
    ld->syntax_pass = true;
    while (bad > 0) {
        int at = skip + bad;
        config_error(ld, at, "syntax", "expected 'key = value' or '[section]'");
        ld->pos = 0;
        for (ld->line = 0; ld->line < at && ld->pos < ld->len; ld->line++) {
            const char *nl = memchr(ld->text + ld->pos, '\n', ld->len - ld->pos);
            ld->pos = nl ? (size_t)(nl - ld->text) + 1 : ld->len;
        }
        skip = at;
        bad = ini_parse_stream(config_read_line, ld, config_on_key, ld);
    }
    if (bad < 0)
        config_error(ld, 0, "config", "out of memory while parsing");
}

static int
load_error_cmp(const void *a, const void *b)
{
    const struct load_error *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
config_loader_finish(struct loader *ld, struct config_errors *errs)
{
    if (ld->nerrs > 0)
        qsort(ld->errs, ld->nerrs, sizeof(*ld->errs), load_error_cmp);
    if (errs != NULL) {
        errs->lines = xcalloc(ld->nerrs + 1, sizeof(*errs->lines));
        for (size_t i = 0; i < ld->nerrs; i++)
            errs->lines[i] = ld->errs[i].text;
        errs->n = ld->nerrs;
        if (ld->nerrors > ld->nerrs) {
            size_t len = strlen(ld->name) + 64;
            errs->lines[errs->n] = xcalloc(1, len);
            snprintf(errs->lines[errs->n++], len, "%s: %zu more errors not shown", ld->name,
                     ld->nerrors - ld->nerrs);
        }
    } else {
        for (size_t i = 0; i < ld->nerrs; i++)
            free(ld->errs[i].text);
    }
    free(ld->errs);
    for (size_t i = 0; i < ld->nsecs; i++) {
        struct section_rec *sec = &ld->secs[i];
        for (size_t j = 0; j < sec->noverrides; j++)
            free(sec->overrides[j].value);
        free(sec->overrides);
        free(sec->seen);
        free(sec->name);
    }
    free(ld->secs);
}

static struct config *
config_load_text(const char *name, const char *text, size_t len, struct config_errors *errs)
{
    struct loader ld;
    struct config *c = xcalloc(1, sizeof(*c));

    if (errs != NULL)
        memset(errs, 0, sizeof(*errs));
    memset(&ld, 0, sizeof(ld));
    ld.name = name;
    ld.config = c;
    ld.text = text;
    ld.len = len;
    atomic_init(&c->refs, 1);
    c->path = xstrdup(name);
    config_apply_defaults(&ld, SEC_MOAT, c);
    config_apply_defaults(&ld, SEC_TLS, &c->tls);
    config_apply_defaults(&ld, SEC_LIMITS, &c->limits);
    config_apply_defaults(&ld, SEC_TIMEOUTS, &c->timeouts);
    config_apply_defaults(&ld, SEC_AUTH, &c->auth);
    config_apply_defaults(&ld, SEC_ACCESS, &c->access);
    config_apply_defaults(&ld, SEC_DNS, &c->dns);
    config_apply_defaults(&ld, SEC_CLUSTER, &c->cluster);
    config_parse(&ld);
    config_check(&ld);
    if (ld.nerrors > 0) {
        config_free(c);
        c = NULL;
    }
    config_loader_finish(&ld, errs);
    return c;
}

struct config *
config_load_string(const char *name, const char *text, struct config_errors *errs)
{
    return config_load_text(name, text, strlen(text), errs);
}

static struct config *
config_load_failed(const char *path, const char *why, struct config_errors *errs)
{
    size_t len = 2 * strlen(path) + strlen(why) + 64;

    if (errs != NULL) {
        errs->lines = xcalloc(1, sizeof(*errs->lines));
        errs->lines[0] = xcalloc(1, len);
        snprintf(errs->lines[0], len, "%s:0: config: cannot read '%s': %s", path, path, why);
        errs->n = 1;
    }
    return NULL;
}

struct config *
config_load(const char *path, struct config_errors *errs)
{
    struct stat st;
    struct config *c;
    char *text;
    size_t n;
    FILE *f;

    if (errs != NULL)
        memset(errs, 0, sizeof(*errs));
    f = fopen(path, "re");
    if (f == NULL)
        return config_load_failed(path, strerror(errno), errs);
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return config_load_failed(path, "not a regular file", errs);
    }
    if (st.st_size > (off_t)CONFIG_FILE_MAX) {
        fclose(f);
        return config_load_failed(path, "larger than 16 MB", errs);
    }
    text = xcalloc(1, (size_t)st.st_size + 1);
    n = fread(text, 1, (size_t)st.st_size, f);
    if (ferror(f)) {
        free(text);
        fclose(f);
        return config_load_failed(path, "read error", errs);
    }
    fclose(f);
    c = config_load_text(path, text, n, errs);
    free(text);
    return c;
}

void
config_errors_free(struct config_errors *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->n = 0;
}

void
config_auth_free(struct config_auth *a)
{
    free(a->sasldb_path);
    free(a->saslauthd_path);
    free(a->mech_list);
    free(a->realm);
    a->sasldb_path = a->saslauthd_path = a->mech_list = a->realm = NULL;
}

void
config_access_free(struct config_access *a)
{
    cidr_list_free(&a->allow);
    cidr_list_free(&a->deny);
}

static void
config_listener_free(struct config_listener *l)
{
    free(l->name);
    free(l->backend_name);
    free(l->local_domains);
    free(l->sender_login_map);
    sender_map_free(l->sender_map);
    config_auth_free(&l->auth_conf);
    config_access_free(&l->access);
    cidr_list_free(&l->proxy_trusted);
    free(l);
}

void
config_free(struct config *c)
{
    if (c == NULL)
        return;
    free(c->path);
    free(c->hostname);
    free(c->user);
    free(c->group);
    free(c->log_file);
    for (size_t i = 0; i < c->tls.ncerts; i++) {
        free(c->tls.certs[i].cert_file);
        free(c->tls.certs[i].key_file);
    }
    free(c->tls.ciphers);
    free(c->tls.groups);
    config_auth_free(&c->auth);
    config_access_free(&c->access);
    config_dns_free(&c->dns);
    free(c->cluster.username);
    free(c->cluster.prefix);
    if (c->cluster.password != NULL)
        explicit_bzero(c->cluster.password, strlen(c->cluster.password));
    free(c->cluster.password);
    while (c->backends != NULL) {
        struct config_backend *b = c->backends;
        c->backends = b->next;
        free(b->name);
        free(b->helo_name);
        free(b->master_user);
        free(b->master_password_file);
        free(b->master_separator);
        if (b->master_password != NULL)
            explicit_bzero(b->master_password, strlen(b->master_password));
        free(b->master_password);
        free(b);
    }
    while (c->listeners != NULL) {
        struct config_listener *l = c->listeners;
        c->listeners = l->next;
        config_listener_free(l);
    }
    free(c);
}

struct config *
config_ref(struct config *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void
config_unref(struct config *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
        config_free(c);
}
