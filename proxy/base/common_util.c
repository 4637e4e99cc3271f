/*
 * common_util.c: the few helpers common.h declares: fatal() for a broken environment at startup,
 * moat_panic() for bugs, allocation that cannot fail, the monotonic clock and table seeds. Nothing
 * here knows about sessions or configuration; nothing here may be called with a peer's bytes as a
 * format.
 */
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common.h"

void
fatal(const char *fmt, ...)
{
    va_list ap;

    fputs("moat: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void
moat_panic(const char *file, int line, const char *what)
{
    fprintf(stderr, "moat: panic: %s:%d: assertion failed: %s\n", file, line, what);
    abort();
}

void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        fatal("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *
xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        fatal("out of memory (%zu bytes)", size);
    return p;
}

char *
xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        fatal("out of memory (%zu bytes)", strlen(s) + 1);
    return p;
}

void *
xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
        fatal("out of memory (%zu bytes)", size);
    return q;
}

static int
add_tls_segment(struct dl_phdr_info *info, size_t size, void *arg)
{
    size_t *total = arg;
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_TLS)
            *total += ph->p_memsz + ph->p_align;
    }
    return 0;
}

size_t
thread_stack_bytes(size_t want_bytes)
{
    size_t tls_bytes = 0;
    dl_iterate_phdr(add_tls_segment, &tls_bytes);
    size_t page = 4096;
    return (want_bytes + tls_bytes + page - 1) / page * page;
}

static uint64_t
clock_ms(clockid_t id, const char *name)
{
    struct timespec ts;

    if (clock_gettime(id, &ts) != 0)
        fatal("clock_gettime(%s) failed", name);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t
moat_now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
}

uint64_t
moat_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME, "CLOCK_REALTIME");
}

uint64_t
moat_random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
        seed = moat_now_ms() ^ (uint64_t)(uintptr_t)&seed;
    return seed;
}
