/*
 * sendermap.c: the sender_login_map: parse "KEY login[,login...]" lines into a sorted table,
 * look senders up by full address, then by "@domain". The file is read once per configuration
 * generation; lookups never allocate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sendermap.h"

#define SENDER_MAP_MAX_BYTES (4 * 1024 * 1024)
#define SENDER_MAP_FIELD_MAX 320

struct sender_entry {
    char *key;    /* lower-case address or "@domain" */
    char *logins; /* comma-separated */
};

struct sender_map {
    struct sender_entry *entries;
    size_t n;
};

static int
entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct sender_entry *)a)->key, ((const struct sender_entry *)b)->key);
}

static char *
lower_dup(const char *p, size_t n)
{
    char *s = xcalloc(1, n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
    return s;
}

static bool
field_ok(const char *p, size_t n)
{
    if (n == 0 || n > SENDER_MAP_FIELD_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

/* One non-comment line: "key logins". Returns -1 on a malformed line. */
static int
parse_line(struct sender_map *m, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    size_t ks = i;
    while (i < n && p[i] != ' ' && p[i] != '\t')
        i++;
    size_t ke = i;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    size_t vs = i;
    while (i < n && p[i] != ' ' && p[i] != '\t')
        i++;
    size_t ve = i;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i != n || !field_ok(p + ks, ke - ks) || !field_ok(p + vs, ve - vs))
        return -1;
    if (memchr(p + ks, '@', ke - ks) == NULL)
        return -1;
    m->entries = xrealloc(m->entries, (m->n + 1) * sizeof(*m->entries));
    m->entries[m->n].key = lower_dup(p + ks, ke - ks);
    m->entries[m->n].logins = lower_dup(p + vs, ve - vs);
    m->n++;
    return 0;
}

struct sender_map *
sender_map_parse(const char *text, size_t n, const char **err_out, int *line_out)
{
    struct sender_map *m = xcalloc(1, sizeof(*m));
    int line = 0;
    size_t pos = 0;
    while (pos < n) {
        line++;
        const char *lf = memchr(text + pos, '\n', n - pos);
        size_t end = lf ? (size_t)(lf - text) : n;
        size_t len = end - pos;
        if (len > 0 && text[pos + len - 1] == '\r')
            len--;
        const char *hash = memchr(text + pos, '#', len);
        if (hash != NULL)
            len = (size_t)(hash - (text + pos));
        bool blank = true;
        for (size_t i = 0; i < len; i++)
            blank = blank && (text[pos + i] == ' ' || text[pos + i] == '\t');
        if (!blank && parse_line(m, text + pos, len) != 0) {
            *err_out = "expected 'address-or-@domain login[,login...]'";
            *line_out = line;
            sender_map_free(m);
            return NULL;
        }
        pos = end + 1;
    }
    qsort(m->entries, m->n, sizeof(*m->entries), entry_cmp);
    return m;
}

struct sender_map *
sender_map_load(const char *path, const char **err_out, int *line_out)
{
    *line_out = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        *err_out = strerror(errno);
        return NULL;
    }
    char *text = xcalloc(1, SENDER_MAP_MAX_BYTES + 1);
    size_t n = fread(text, 1, SENDER_MAP_MAX_BYTES + 1, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    struct sender_map *m = NULL;
    if (failed)
        *err_out = "read error";
    else if (n > SENDER_MAP_MAX_BYTES)
        *err_out = "file larger than 4 MB";
    else
        m = sender_map_parse(text, n, err_out, line_out);
    free(text);
    return m;
}

void
sender_map_free(struct sender_map *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->entries[i].key);
        free(m->entries[i].logins);
    }
    free(m->entries);
    free(m);
}

static const struct sender_entry *
lookup(const struct sender_map *m, const char *key, size_t n)
{
    char buf[SENDER_MAP_FIELD_MAX + 1];
    if (n > SENDER_MAP_FIELD_MAX)
        return NULL;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
    buf[n] = '\0';
    struct sender_entry probe = {.key = buf};
    return bsearch(&probe, m->entries, m->n, sizeof(*m->entries), entry_cmp);
}

static bool
login_listed(const char *logins, const char *login)
{
    size_t ln = strlen(login);
    for (const char *p = logins; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (len == ln && strncasecmp(p, login, ln) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

bool
sender_map_allows(const struct sender_map *m, const char *addr, size_t n, const char *login)
{
    if (m != NULL && m->n > 0) {
        const struct sender_entry *e = lookup(m, addr, n);
        const char *at = memchr(addr, '@', n);
        if (e == NULL && at != NULL)
            e = lookup(m, at, n - (size_t)(at - addr));
        if (e != NULL)
            return login_listed(e->logins, login);
    }
    return strlen(login) == n && strncasecmp(addr, login, n) == 0;
}
