#include "common/buf.h"
#include "common/error.h"
#include "common/units.h"
#include "test.h"

#include <stdint.h>

TEST(test_buf_append_grows_and_terminates)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(luar_buf_appendf(&b, "%d,", i % 10), 0);
    CHECK_EQ_INT(b.len, 2000);
    CHECK_EQ_INT(b.data[b.len], '\0');
    luar_buf_free(&b);
}

TEST(test_buf_cap_refuses_and_keeps_content)
{
    luar_buf_t b;
    luar_buf_init(&b, 8);
    CHECK_EQ_INT(luar_buf_puts(&b, "12345"), 0);
    CHECK_EQ_INT(luar_buf_puts(&b, "6789"), LUAR_ETOOBIG);
    CHECK_EQ_STR(b.data, "12345");
    CHECK_EQ_INT(luar_buf_puts(&b, "678"), 0);
    CHECK_EQ_INT(luar_buf_appendf(&b, "%s", "x"), LUAR_ETOOBIG);
    luar_buf_free(&b);
}

TEST(test_buf_json_string_escapes_and_repairs_utf8)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    const char in[] = "a\"b\\c\n\x01\xc3\xa9\xff";
    CHECK_EQ_INT(luar_buf_append_json_string(&b, in, sizeof in - 1), 0);
    CHECK_EQ_STR(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\xef\xbf\xbd\"");
    luar_buf_free(&b);
}

TEST(test_parse_size_units)
{
    uint64_t v = 0;
    CHECK_EQ_INT(luar_parse_size("1MiB", &v), 0);
    CHECK_EQ_INT(v, 1048576);
    CHECK_EQ_INT(luar_parse_size("16KiB", &v), 0);
    CHECK_EQ_INT(v, 16384);
    CHECK_EQ_INT(luar_parse_size("10MB", &v), 0);
    CHECK_EQ_INT(v, 10000000);
    CHECK_EQ_INT(luar_parse_size("512", &v), 0);
    CHECK_EQ_INT(v, 512);
    CHECK_EQ_INT(luar_parse_size("ten", &v), LUAR_EINVAL);
    CHECK_EQ_INT(luar_parse_size("1 parsec", &v), LUAR_EINVAL);
    CHECK_EQ_INT(luar_parse_size("-1", &v), LUAR_EINVAL);
}

TEST(test_strerror_names_codes)
{
    CHECK_EQ_STR(luar_strerror(LUAR_ETOOBIG), "too large");
    CHECK_EQ_STR(luar_strerror(12345), "unknown error");
}

int main(void)
{
    RUN(test_buf_append_grows_and_terminates);
    RUN(test_buf_cap_refuses_and_keeps_content);
    RUN(test_buf_json_string_escapes_and_repairs_utf8);
    RUN(test_parse_size_units);
    RUN(test_strerror_names_codes);
    return DONE();
}
