#include "common/buf.h"
#include "common/error.h"
#include "common/json.h"
#include "test.h"

#include <stdlib.h>

static int valid(const char *s)
{
    return luar_json_validate(s, strlen(s), 0, NULL) == 0;
}

static int valid_n(const char *s, size_t n)
{
    return luar_json_validate(s, n, 0, NULL) == 0;
}

TEST(test_json_accepts_valid_texts)
{
    CHECK(valid("{}"));
    CHECK(valid("[]"));
    CHECK(valid("  {\"a\" : [1, -2.5e+10, 0, 0.1, 1E3, true, false, null, \"x\"]}\r\n\t"));
    CHECK(valid("\"just a string\""));
    CHECK(valid("-0"));
    CHECK(valid("42"));
    CHECK(valid("null"));
    CHECK(valid("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\""));
    CHECK(valid("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""));
    CHECK(valid("{\"a\":{\"b\":{\"c\":[[[]]]}}}"));
}

TEST(test_json_rejects_invalid_texts)
{
    CHECK(!valid(""));
    CHECK(!valid("   "));
    CHECK(!valid("{"));
    CHECK(!valid("{\"a\":1,}"));
    CHECK(!valid("[1,]"));
    CHECK(!valid("[1 2]"));
    CHECK(!valid("{a:1}"));
    CHECK(!valid("{'a':1}"));
    CHECK(!valid("{\"a\" 1}"));
    CHECK(!valid("01"));
    CHECK(!valid("1."));
    CHECK(!valid(".5"));
    CHECK(!valid("+1"));
    CHECK(!valid("1e"));
    CHECK(!valid("-"));
    CHECK(!valid("NaN"));
    CHECK(!valid("tru"));
    CHECK(!valid("nul"));
    CHECK(!valid("\"unterminated"));
    CHECK(!valid("\"tab\there\""));
    CHECK(!valid("\"nl\nhere\""));
    CHECK(!valid_n("\"nul\0\"", 6));
}

TEST(test_json_rejects_bad_escapes_and_surrogates)
{
    CHECK(!valid("\"\\x41\""));
    CHECK(!valid("\"\\a\""));
    CHECK(!valid("\"\\u12\""));
    CHECK(!valid("\"\\u12g4\""));
    CHECK(!valid("\"\\"));
    CHECK(!valid("\"\\uD83D\""));            /* lone high surrogate */
    CHECK(!valid("\"\\uD83Dx\""));
    CHECK(!valid("\"\\uD83D\\u0041\""));     /* high followed by a non-low */
    CHECK(!valid("\"\\uDE00\""));            /* lone low surrogate */
    CHECK(!valid("\"\\uDE00\\uD83D\""));     /* reversed pair */
}

TEST(test_json_rejects_bad_utf8)
{
    CHECK(!valid("\"\xff\""));
    CHECK(!valid("\"\xc3\""));               /* truncated sequence */
    CHECK(!valid("\"\xc0\xaf\""));           /* overlong '/' */
    CHECK(!valid("\"\xe0\x80\xaf\""));       /* overlong */
    CHECK(!valid("\"\xed\xa0\x80\""));       /* UTF-8 encoded surrogate */
    CHECK(!valid("\"\xf4\x90\x80\x80\""));   /* above U+10FFFF */
    CHECK(!valid("\"\x80\""));               /* lone continuation byte */
}

TEST(test_json_rejects_trailing_garbage_and_names_offset)
{
    luar_buf_t why;
    luar_buf_init(&why, 0);
    CHECK_EQ_INT(luar_json_validate("{} x", 4, 0, &why), LUAR_EPARSE);
    CHECK(why.data && strstr(why.data, "at byte 3") != NULL);
    luar_buf_reset(&why);
    CHECK_EQ_INT(luar_json_validate("{\"a\":1 \"b\":2}", 13, 0, &why), LUAR_EPARSE);
    CHECK(why.data && strstr(why.data, "at byte 7: expected ',' or '}'") != NULL);
    luar_buf_free(&why);
    CHECK(!valid("{}{}"));
    CHECK(!valid("1 2"));
    CHECK(!valid_n("{}\0", 3));
}

static char *nested(int depth)
{
    char *s = malloc((size_t)depth * 2 + 1);
    for (int i = 0; i < depth; i++) {
        s[i] = '[';
        s[depth * 2 - 1 - i] = ']';
    }
    s[depth * 2] = '\0';
    return s;
}

TEST(test_json_depth_limit)
{
    char *ok = nested(LUAR_JSON_MAX_DEPTH);
    char *deep = nested(LUAR_JSON_MAX_DEPTH + 1);
    CHECK(valid(ok));
    CHECK(!valid(deep));
    CHECK_EQ_INT(luar_json_validate("[[1]]", 5, 2, NULL), 0);
    CHECK_EQ_INT(luar_json_validate("[[1]]", 5, 1, NULL), LUAR_EPARSE);
    CHECK_EQ_INT(luar_json_validate("{\"a\":{\"b\":1}}", 13, 1, NULL), LUAR_EPARSE);
    free(ok);
    free(deep);
    /* far deeper than the stack could take if the bound were not applied first */
    char *huge = nested(200000);
    CHECK_EQ_INT(luar_json_validate(huge, strlen(huge), 1 << 30, NULL), LUAR_EPARSE);
    free(huge);
}

static int member_is(const char *json, const char *key, const char *want)
{
    const char *v = NULL;
    size_t n = 0;
    if (!luar_json_member(json, strlen(json), key, &v, &n))
        return want == NULL;
    return want != NULL && n == strlen(want) && memcmp(v, want, n) == 0;
}

TEST(test_json_member_top_level)
{
    const char *doc = " { \"id\" : \"evt_1\", \"n\": -1.5e3, \"obj\": {\"type\": \"inner\"},"
                      " \"arr\": [1, {\"type\": \"x\"}], \"type\":\"charge.succeeded\","
                      " \"t\": true, \"z\": null } ";
    CHECK(valid(doc));
    CHECK(member_is(doc, "id", "\"evt_1\""));
    CHECK(member_is(doc, "n", "-1.5e3"));
    CHECK(member_is(doc, "obj", "{\"type\": \"inner\"}"));
    CHECK(member_is(doc, "arr", "[1, {\"type\": \"x\"}]"));
    CHECK(member_is(doc, "type", "\"charge.succeeded\""));
    CHECK(member_is(doc, "t", "true"));
    CHECK(member_is(doc, "z", "null"));
    CHECK(member_is(doc, "missing", NULL));
    CHECK(member_is(doc, "ty", NULL));
}

TEST(test_json_member_nested_keys_not_matched)
{
    const char *doc = "{\"data\": {\"id\": \"inner\", \"s\": \"}\\\"{\"}, \"x\": [\"id\"]}";
    CHECK(valid(doc));
    CHECK(member_is(doc, "id", NULL));
    CHECK(member_is(doc, "x", "[\"id\"]"));
    /* a value string that looks like a key is not a key */
    CHECK(member_is("{\"a\": \"id\", \"b\": 2}", "id", NULL));
    CHECK(member_is("{\"a\": \"id\", \"b\": 2}", "b", "2"));
}

TEST(test_json_member_duplicates_take_first)
{
    CHECK(member_is("{\"type\":\"first\",\"type\":\"second\"}", "type", "\"first\""));
}

TEST(test_json_member_escaped_key_and_non_objects)
{
    CHECK(member_is("{\"\\u0069d\": 7}", "id", "7"));
    CHECK(member_is("{\"a\\\"b\": 1}", "a\"b", "1"));
    CHECK(member_is("[{\"id\": 1}]", "id", NULL));
    CHECK(member_is("\"id\"", "id", NULL));
    CHECK(member_is("{}", "id", NULL));
    CHECK(member_is("{ }", "id", NULL));
}

TEST(test_json_array_walk)
{
    const char *doc = " [ {\"a\":[1,2]} , \"s,]\" ,3, [ ] ,null ] ";
    CHECK(valid(doc));
    const char *want[] = {"{\"a\":[1,2]}", "\"s,]\"", "3", "[ ]", "null"};
    size_t pos = 0, n = 0, k = 0;
    const char *el;
    while (luar_json_array_next(doc, strlen(doc), &pos, &el, &n)) {
        CHECK(k < 5);
        if (k < 5)
            CHECK(n == strlen(want[k]) && memcmp(el, want[k], n) == 0);
        k++;
    }
    CHECK_EQ_INT(k, 5);
    CHECK_EQ_INT(luar_json_array_next(doc, strlen(doc), &pos, &el, &n), 0);
    pos = 0;
    CHECK_EQ_INT(luar_json_array_next("[]", 2, &pos, &el, &n), 0);
    pos = 0;
    CHECK_EQ_INT(luar_json_array_next(" [ ] ", 5, &pos, &el, &n), 0);
    pos = 0;
    CHECK_EQ_INT(luar_json_array_next("{\"a\":1}", 7, &pos, &el, &n), 0);
}

static int unquotes_to(const char *raw, const char *want, size_t want_len)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    int ok = luar_json_unquote(raw, strlen(raw), &b) == 0 && b.len == want_len &&
             (want_len == 0 || memcmp(b.data, want, want_len) == 0);
    luar_buf_free(&b);
    return ok;
}

TEST(test_json_unquote)
{
    CHECK(unquotes_to("\"\"", "", 0));
    CHECK(unquotes_to("\"plain\"", "plain", 5));
    CHECK(unquotes_to("\"a\\\"b\\\\c\\/d\\n\\t\"", "a\"b\\c/d\n\t", 9));
    CHECK(unquotes_to("\"\\u00e9\\u20ac\"", "\xc3\xa9\xe2\x82\xac", 5));
    CHECK(unquotes_to("\"\\uD83D\\uDE00!\"", "\xf0\x9f\x98\x80!", 5));
    CHECK(unquotes_to("\"\\u0000\"", "\0", 1));
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_json_unquote("42", 2, &b), LUAR_EPARSE);
    CHECK_EQ_INT(luar_json_unquote("\"", 1, &b), LUAR_EPARSE);
    CHECK_EQ_INT(luar_json_unquote("\"\\uD83D\"", 8, &b), LUAR_EPARSE);
    CHECK_EQ_INT(luar_json_unquote("\"\\q\"", 4, &b), LUAR_EPARSE);
    luar_buf_free(&b);
    luar_buf_init(&b, 3);
    CHECK_EQ_INT(luar_json_unquote("\"toolong\"", 9, &b), LUAR_ETOOBIG);
    luar_buf_free(&b);
}

/*
 * Strings are scanned eight plain bytes at a time, then byte by byte: every special byte
 * (quote, backslash, control, non-ASCII) is judged exactly wherever it falls in or after
 * an eight-byte block, and a refusal names its exact offset.
 */
TEST(test_json_string_fast_path_boundaries)
{
    static const char *const good[] = {
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "\x7f",
        "\\n",
        "\\\"",
        "\\\\",
        "\\u00e9",
        "\\uD83D\\uDE00",
        " ",
        "~",
        "!",
        "#",
        "[",
        "]",
    };
    static const char *const bad[] = {
        "\xff",    "\xc3",    "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\x80",    "\x01",    "\x1f",     "\t",           "\n",           "\\x",
        "\\uD83D", "\\uDE00", "\\u12g4",  "\xc3\x28",
    };
    char text[128], want[64];
    luar_buf_t why;
    luar_buf_init(&why, 0);
    for (int k = 0; k <= 24; k++) {
        for (int m = 0; m <= 17; m += 1) {
            for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
                int n = snprintf(text, sizeof text, "\"%.*s%s%.*s\"", k,
                                 "aaaaaaaaaaaaaaaaaaaaaaaaa", good[i], m, "bbbbbbbbbbbbbbbbbb");
                CHECK(valid_n(text, (size_t)n));
            }
            for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                int n = snprintf(text, sizeof text, "\"%.*s%s%.*s\"", k,
                                 "aaaaaaaaaaaaaaaaaaaaaaaaa", bad[i], m, "bbbbbbbbbbbbbbbbbb");
                luar_buf_reset(&why);
                CHECK_EQ_INT(luar_json_validate(text, (size_t)n, 0, &why), LUAR_EPARSE);
                /* Raw bytes are refused where they start; escapes at or after their
                 * backslash. */
                if (bad[i][0] != '\\') {
                    snprintf(want, sizeof want, "at byte %d:", 1 + k);
                    CHECK(why.data && strstr(why.data, want) == why.data);
                }
            }
        }
        /* A quote ends the string wherever it falls: what follows is extra text. */
        int n = snprintf(text, sizeof text, "\"%.*s\"x\"", k, "aaaaaaaaaaaaaaaaaaaaaaaaa");
        luar_buf_reset(&why);
        CHECK_EQ_INT(luar_json_validate(text, (size_t)n, 0, &why), LUAR_EPARSE);
        snprintf(want, sizeof want, "at byte %d:", 2 + k);
        CHECK(why.data && strstr(why.data, want) == why.data);
        /* Unterminated, whatever its length; a NUL inside is a control character. */
        n = snprintf(text, sizeof text, "\"%.*s", k, "aaaaaaaaaaaaaaaaaaaaaaaaa");
        CHECK(!valid_n(text, (size_t)n));
        memset(text, 'a', sizeof text);
        text[0] = '"';
        text[1 + k] = '\0';
        text[40] = '"';
        CHECK(!valid_n(text, 41));
    }
    luar_buf_free(&why);
}

int main(void)
{
    RUN(test_json_accepts_valid_texts);
    RUN(test_json_rejects_invalid_texts);
    RUN(test_json_rejects_bad_escapes_and_surrogates);
    RUN(test_json_rejects_bad_utf8);
    RUN(test_json_rejects_trailing_garbage_and_names_offset);
    RUN(test_json_depth_limit);
    RUN(test_json_member_top_level);
    RUN(test_json_member_nested_keys_not_matched);
    RUN(test_json_member_duplicates_take_first);
    RUN(test_json_member_escaped_key_and_non_objects);
    RUN(test_json_array_walk);
    RUN(test_json_unquote);
    RUN(test_json_string_fast_path_boundaries);
    return DONE();
}
