/*
 * The slack plugin's private declarations: the host table it was given, the scheme, and
 * the body readers the scheme's events() uses (body.c). Everything here is internal to the
 * .so (hidden visibility); only `luar_plugin` is exported.
 */
#ifndef SLACK_H
#define SLACK_H

#include <luar/plugin.h>

#include <stddef.h>

/* The host table given to init(); NULL before init and after fini. */
extern const luar_host_t *slack_host;

extern const luar_webhook_scheme_t slack_scheme;

/*
 * A top-level member `key` of the JSON object in s[0..n): its raw value token in *v, *vlen
 * (a string keeps its quotes). Returns 1 when found, 0 when absent or when the text is not
 * an object as far as it was read (the host validates the JSON afterwards).
 */
int slack_json_member(const char *s, size_t n, const char *key, const char **v, size_t *vlen);

/*
 * Appends the decoded text of the JSON string token v[0..vlen) (quotes included) to
 * `out`. Returns 0, LUAR_PLUGIN_EPARSE (not a string, bad escape) or ENOMEM.
 */
int slack_json_unquote(const char *v, size_t vlen, luar_buf_t *out);

/*
 * Field `key` of the application/x-www-form-urlencoded text s[0..n): its still-encoded
 * value span in *v, *vlen (the first occurrence). Returns 1 when found, else 0.
 */
int slack_form_find(const char *s, size_t n, const char *key, const char **v, size_t *vlen);

/*
 * Percent-decodes v[0..vlen) ('+' is a space) into a new NUL-terminated string *out (the
 * caller frees it) of *out_len bytes. Returns 0, LUAR_PLUGIN_EPARSE (bad %-escape; nothing
 * to free) or ENOMEM.
 */
int slack_form_decode(const char *v, size_t vlen, char **out, size_t *out_len);

/*
 * Appends the form s[0..n) as one JSON object of strings ({"command":"/deploy",…}) to
 * `out`; a repeated field keeps its last value as JSON decoders do. Returns 0,
 * LUAR_PLUGIN_EPARSE or ENOMEM.
 */
int slack_form_to_json(const char *s, size_t n, luar_buf_t *out);

#endif
