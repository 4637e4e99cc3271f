/*
 * common.h: small helpers every moat file may use: assertions for bugs (on in release builds),
 * fatal() for a broken environment at startup, and a few macros. No library headers here.
 */
#ifndef MOAT_COMMON_H
#define MOAT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MOAT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MOAT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#if defined(__GNUC__)
#define MOAT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define MOAT_NORETURN __attribute__((noreturn))
#else
#define MOAT_PRINTF(f, a)
#define MOAT_NORETURN
#endif

/* A failed assertion is a bug in moat, never something a peer can cause. */
#define MOAT_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            moat_panic(__FILE__, __LINE__, #cond);                                                 \
    } while (0)

MOAT_NORETURN void moat_panic(const char *file, int line, const char *what);
MOAT_NORETURN void fatal(const char *fmt, ...) MOAT_PRINTF(1, 2);

/* Allocation that cannot fail: on exhaustion moat exits (a partial session is worse). */
void *xcalloc(size_t n, size_t size);
/* uninitialised: for buffers that are written before they are read */
void *xmalloc(size_t size);
char *xstrdup(const char *s);
void *xrealloc(void *p, size_t size);

/* Stack size for a thread that needs want_bytes of its own: glibc carves the static
 * thread-local storage of every loaded module out of the thread's stack, so that comes on top
 * (an assembly-heavy TLS library can carry a megabyte of it). */
size_t thread_stack_bytes(size_t want_bytes);

/* Monotonic clock in milliseconds: for everything one process measures. */
uint64_t moat_now_ms(void);
/* Wall clock in milliseconds since the epoch: only for times shared with other hosts (a fleet's
 * rate windows and session leases in Redis), where each host's monotonic clock counts from its
 * own boot. */
uint64_t moat_wall_ms(void);
/* A seed for a table's keyed hash: from the kernel's random pool, else from the clock. */
uint64_t moat_random_seed(void);

#endif
