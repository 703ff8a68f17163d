/*
 * A minimal unit-test harness: TEST(name) defines a case, CHECK* record failures with
 * file:line, RUN(name) runs a case, and DONE() prints "N passed, N failed" and returns
 * the exit status. No third-party code; each case arranges and tears down its own world.
 */
#ifndef LUAR_TEST_H
#define LUAR_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failed_checks;
static int test_passed, test_failed;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
            test_failed_checks++;                                                         \
        }                                                                                 \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                \
    do {                                                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);                               \
        if (a_ != b_) {                                                                   \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, a_, b_);                                                      \
            test_failed_checks++;                                                         \
        }                                                                                 \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                \
    do {                                                                                  \
        const char *a_ = (a), *b_ = (b);                                                  \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                            \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,       \
                    __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");            \
            test_failed_checks++;                                                         \
        }                                                                                 \
    } while (0)

#define RUN(name)                                                                         \
    do {                                                                                  \
        int before_ = test_failed_checks;                                                 \
        name();                                                                           \
        if (test_failed_checks == before_) {                                              \
            test_passed++;                                                                \
        } else {                                                                          \
            test_failed++;                                                                \
            fprintf(stderr, "FAIL %s\n", #name);                                          \
        }                                                                                 \
    } while (0)

#define DONE()                                                                            \
    (printf("%d passed, %d failed\n", test_passed, test_failed), test_failed ? 1 : 0)

#endif
