/*
 * test.h: the tiny harness for moat's C unit tests. Each test file is one program; CHECK records a
 * failure with file:line and keeps going; main returns test_failures() so ctest sees the result.
 */
#ifndef MOAT_TEST_H
#define MOAT_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failed_count;
static int test_checked_count;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checked_count++;                                                                      \
        if (!(cond)) {                                                                             \
            test_failed_count++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        test_checked_count++;                                                                      \
        if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0) {             \
            test_failed_count++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK_STR failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__,     \
                    check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");               \
        }                                                                                          \
    } while (0)

static inline int
test_finish(const char *name)
{
    fprintf(stderr, "%s: %d checks, %d failed\n", name, test_checked_count, test_failed_count);
    return test_failed_count == 0 && test_checked_count > 0 ? 0 : 1;
}

#endif
