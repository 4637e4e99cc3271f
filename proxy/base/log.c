/*
 * log.c: the logger. Builds a line in a caller-owned buffer and emits it with one write(), so
 * worker threads never interleave. Escapes every value in JSON and every peer-supplied value in
 * text; cuts peer-supplied values to LOG_PEER_STR_MAX bytes. Never logs a secret: callers must
 * not pass one, and nothing here reads protocol buffers by itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int log_fd = 2;
static int log_format_json;
static int log_level_max = LOG_INFO;
static char *log_path;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int
log_init(int format, int level, const char *path)
{
    log_format_json = format == 1;
    log_level_max = level;
    free(log_path);
    log_path = path ? xstrdup(path) : NULL;
    return log_reopen();
}

int
log_reopen(void)
{
    if (log_path == NULL) {
        log_fd = 2;
        return 0;
    }
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    int old = log_fd;
    log_fd = fd;
    if (old > 2)
        close(old);
    return 0;
}

bool
log_enabled(enum log_level level)
{
    return (int)level <= log_level_max;
}

static void
line_append(struct log_line *l, const char *p, size_t n)
{
    size_t room = sizeof(l->buf) - 2 - l->len; /* keep room for "}\n" */
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, p, n);
    l->len += n;
}

static void
line_putc(struct log_line *l, char c)
{
    line_append(l, &c, 1);
}

/* Escape for a double-quoted value; the same rules suit text and JSON. */
static void
line_escaped(struct log_line *l, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') {
            line_putc(l, '\\');
            line_putc(l, (char)c);
        } else if (c < 0x20 || c >= 0x7f) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            if (!l->json) {
                esc[1] = 'x';
                line_append(l, esc, 1);
                line_append(l, esc + 1, 1);
                line_append(l, esc + 4, 2);
            } else {
                line_append(l, esc, 6);
            }
        } else {
            line_putc(l, (char)c);
        }
    }
}

static bool
needs_quotes(const char *p, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\')
            return true;
    }
    return false;
}

void
log_begin(struct log_line *l, enum log_level level, enum log_event ev)
{
    l->len = 0;
    l->json = log_format_json;
    l->skip = !log_enabled(level);
    if (l->skip)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[80];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    if (l->json) {
        line_append(l, "{", 1);
        line_append(l, "\"ts\":\"", 6);
        line_append(l, when, strlen(when));
        line_append(l, "\",\"level\":\"", 11);
        line_append(l, level_names[level], strlen(level_names[level]));
        line_append(l, "\"", 1);
    } else {
        line_append(l, when, strlen(when));
        line_putc(l, ' ');
        line_append(l, level_names[level], strlen(level_names[level]));
    }
    log_kv(l, "event", "%s", log_event_name(ev));
}

static void
kv_value(struct log_line *l, const char *key, const char *v, size_t n, bool peer)
{
    if (l->json) {
        line_append(l, ",\"", 2);
        line_append(l, key, strlen(key));
        line_append(l, "\":\"", 3);
        line_escaped(l, v, n);
        line_putc(l, '"');
        return;
    }
    line_putc(l, ' ');
    line_append(l, key, strlen(key));
    line_putc(l, '=');
    if (peer || needs_quotes(v, n)) {
        line_putc(l, '"');
        line_escaped(l, v, n);
        line_putc(l, '"');
    } else {
        line_append(l, v, n);
    }
}

void
log_kv(struct log_line *l, const char *key, const char *fmt, ...)
{
    if (l->skip)
        return;
    char v[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    kv_value(l, key, v, MOAT_MIN((size_t)n, sizeof(v) - 1), false);
}

void
log_kv_str(struct log_line *l, const char *key, const char *p, size_t n)
{
    if (l->skip)
        return;
    bool cut = n > LOG_PEER_STR_MAX;
    kv_value(l, key, p ? p : "", p ? MOAT_MIN(n, (size_t)LOG_PEER_STR_MAX) : 0, true);
    if (cut) {
        /* mark the cut inside the quotes: drop the closing quote, add "...", close again */
        l->len--;
        line_append(l, "...\"", 4);
    }
}

void
log_end(struct log_line *l)
{
    if (l->skip)
        return;
    if (l->json)
        l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    ssize_t w;
    do {
        w = write(log_fd, l->buf, l->len);
    } while (w < 0 && errno == EINTR);
}

void
log_msg(enum log_level level, enum log_event ev, const char *fmt, ...)
{
    struct log_line l;
    log_begin(&l, level, ev);
    if (l.skip)
        return;
    char v[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    if (n > 0)
        log_append_trusted(&l, v, MOAT_MIN((size_t)n, sizeof(v) - 1));
    log_end(&l);
}

void
log_append_trusted(struct log_line *l, const char *text, size_t n)
{
    if (l->skip || n == 0)
        return;
    if (l->json) {
        kv_value(l, "detail", text, n, false);
        return;
    }
    line_putc(l, ' ');
    line_append(l, text, n);
}
