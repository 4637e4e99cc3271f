/*
 * test_thread_stack.c: thread_stack_bytes() sizes a stack for what the thread needs plus the
 * static thread-local storage glibc takes out of it. This program carries 1.5 MB of TLS (as a
 * wolfSSL with SP assembly tables can): a fixed 1 MB stack cannot even start a thread.
 */
#include <errno.h>
#include <pthread.h>

#include "common.h"
#include "test.h"

/* not static, and its address escapes: the optimiser must keep all of it */
__thread char big_tls[1536 * 1024];
char *volatile big_tls_escape;

static void *
thread_main(void *arg)
{
    big_tls_escape = big_tls;
    big_tls_escape[0] = 1;
    char frame[256 * 1024]; /* the thread's own stack use */
    memset(frame, 1, sizeof(frame));
    return (void *)(size_t)(frame[sizeof(frame) - 1] + big_tls[0]);
}

static int
start(size_t stack_bytes)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int e = pthread_attr_setstacksize(&attr, stack_bytes);
    pthread_t t;
    if (e == 0)
        e = pthread_create(&t, &attr, thread_main, NULL);
    pthread_attr_destroy(&attr);
    if (e != 0)
        return e;
    void *ret = NULL;
    pthread_join(t, &ret);
    return ret == (void *)2 ? 0 : -1;
}

int
main(void)
{
    /* the failure moat had: the TLS does not fit a fixed 1 MB stack */
    CHECK(start(1024 * 1024) == EINVAL);
    size_t sized = thread_stack_bytes(1024 * 1024);
    CHECK(sized >= 1024 * 1024 + sizeof(big_tls));
    CHECK(sized % 4096 == 0);
    CHECK(start(sized) == 0);
    return test_finish("test_thread_stack");
}
