/*
 * What every admin endpoint shares (api.h): answers in the one error shape, parameters from
 * the query string or a JSON body, the job filter, and the audit record.
 */
#include "admin/api.h"
#include "audit/audit.h"
#include "common/error.h"
#include "common/json.h"
#include "crypto/crypto.h"
#include "log/log.h"
#include "sched/tz.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- answers ------------------------------------------------------------------------- */

/* No caching anywhere (the answers are live data), and no content sniffing. */
const luar_http_header_t luar_admin_json_headers[3] = {
    {"Content-Type", 12, "application/json", 16},
    {"Cache-Control", 13, "no-store", 8},
    {"X-Content-Type-Options", 22, "nosniff", 7},
};

static void call_free(luar_admin_call_t *c)
{
    luar_admin_param_t *p = c->params;
    while (p) {
        luar_admin_param_t *next = p->next;
        free(p->name);
        free(p->value);
        free(p);
        p = next;
    }
    free(c);
}

void luar_admin_respond(luar_admin_call_t *c, int status, const char *body, size_t len)
{
    luar_http_respond(c->req, status, luar_admin_json_headers, 3, body, len);
    call_free(c);
}

void luar_admin_respond_buf(luar_admin_call_t *c, int status, luar_buf_t *b)
{
    if (b->data)
        luar_admin_respond(c, status, b->data, b->len);
    else
        luar_admin_error(c, 500, "out of memory");
    luar_buf_free(b);
}

static void error_body(luar_buf_t *b, const char *msg)
{
    luar_buf_puts(b, "{\"error\":");
    luar_buf_append_json_string(b, msg, strlen(msg));
    luar_buf_putc(b, '}');
}

void luar_admin_error_req(luar_http_req_t *req, int status, const char *msg)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    error_body(&b, msg);
    if (b.data)
        luar_http_respond(req, status, luar_admin_json_headers, 3, b.data, b.len);
    else
        luar_http_respond(req, 500, luar_admin_json_headers, 3, "{\"error\":\"out of memory\"}",
                          25);
    luar_buf_free(&b);
}

void luar_admin_error(luar_admin_call_t *c, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    luar_admin_error_req(c->req, status, msg);
    call_free(c);
}

void luar_admin_queue_error(luar_admin_call_t *c, int rc, const char *id)
{
    if (rc == LUAR_ENOTFOUND && id != NULL) {
        luar_admin_error(c, 404, "job %s not found", id);
    } else if (rc == LUAR_ENOTFOUND) {
        luar_admin_error(c, 404, "not found");
    } else if (rc == LUAR_EIO || c->env.queue == NULL) {
        const char *why = c->env.queue ? luar_queue_last_error(c->env.queue) : "";
        luar_admin_error(c, 503, "the queue backend does not answer%s%s", *why ? ": " : "", why);
    } else {
        luar_admin_error(c, 500, "queue operation failed: %s", luar_strerror(rc));
    }
}

/* ---- parameters ---------------------------------------------------------------------- */

/* Percent-decodes s[0..len) ('+' is a space) into a new string; NULL when out of memory. A
 * '%' not followed by two hex digits stays as it is. */
static char *form_decode(const char *s, size_t len)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0; i++) {
        size_t before = b.len;
        if (s[i] == '+') {
            rc = luar_buf_putc(&b, ' ');
        } else if (s[i] == '%' && i + 2 < len && luar_hex_decode(&b, s + i + 1, 2) == 0) {
            i += 2;
        } else {
            b.len = before; /* a failed decode may have appended nothing, or part */
            rc = luar_buf_putc(&b, s[i]);
        }
    }
    size_t n;
    char *out = rc == 0 ? luar_buf_detach(&b, &n) : NULL;
    luar_buf_free(&b);
    return out != NULL || rc != 0 ? out : strdup("");
}

static luar_admin_param_t *param_add(luar_admin_call_t *c, char *name, char *value)
{
    luar_admin_param_t *p = malloc(sizeof *p);
    if (p == NULL || name == NULL || value == NULL) {
        free(p);
        free(name);
        free(value);
        return NULL;
    }
    p->name = name;
    p->value = value;
    /* Appended, so the first of a repeated query parameter is found first. */
    p->next = NULL;
    luar_admin_param_t **tail = &c->params;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;
    return p;
}

int luar_admin_parse_query(luar_admin_call_t *c)
{
    const char *q = c->req->query;
    while (q && *q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t nlen = eq ? (size_t)(eq - q) : len;
        if (nlen > 0) {
            const char *v = eq ? eq + 1 : q + len;
            size_t vlen = eq ? len - nlen - 1 : 0;
            if (param_add(c, form_decode(q, nlen), form_decode(v, vlen)) == NULL)
                return LUAR_ENOMEM;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

const char *luar_admin_param(luar_admin_call_t *c, const char *name)
{
    for (luar_admin_param_t *p = c->params; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p->value;
    if (!c->body_is_object)
        return NULL;
    const char *val;
    size_t vlen;
    if (!luar_json_member(c->req->body, c->req->body_len, name, &val, &vlen))
        return NULL;
    if (vlen == 4 && memcmp(val, "null", 4) == 0)
        return NULL;
    if (val[0] == '{' || val[0] == '[') {
        if (c->bad_param == NULL)
            c->bad_param = name; /* static strings: the endpoints' parameter names */
        return NULL;
    }
    luar_buf_t b;
    luar_buf_init(&b, 0); /* the body is bounded already; read_text checks the length */
    if (val[0] == '"' ? luar_json_unquote(val, vlen, &b) : luar_buf_append(&b, val, vlen)) {
        luar_buf_free(&b);
        return NULL;
    }
    size_t len;
    char *value = luar_buf_detach(&b, &len);
    luar_admin_param_t *p = param_add(c, strdup(name), value ? value : strdup(""));
    return p ? p->value : NULL;
}

/* Answers 400 when a parameter read so far was an object or array; returns -1 then. */
static int bad_param(luar_admin_call_t *c)
{
    if (c->bad_param == NULL)
        return 0;
    luar_admin_error(c, 400, "%s: expected a string or a number", c->bad_param);
    return -1;
}

int luar_admin_read_count(luar_admin_call_t *c, const char *name, long def, long min, long max,
                          long *out)
{
    const char *v = luar_admin_param(c, name);
    *out = def;
    if (bad_param(c))
        return -1;
    if (v == NULL)
        return 0;
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < min || n > max) {
        luar_admin_error(c, 400, "%s: expected a whole number from %ld to %ld", name, min, max);
        return -1;
    }
    *out = n;
    return 0;
}

/* A string parameter at most LUAR_ADMIN_MAX_VALUE bytes; NULL for "" or absent. */
static int read_text(luar_admin_call_t *c, const char *name, const char **out)
{
    const char *v = luar_admin_param(c, name);
    *out = v != NULL && *v != '\0' ? v : NULL;
    if (bad_param(c))
        return -1;
    if (v != NULL && strlen(v) > LUAR_ADMIN_MAX_VALUE) {
        luar_admin_error(c, 400, "%s: longer than %d bytes", name, LUAR_ADMIN_MAX_VALUE);
        return -1;
    }
    return 0;
}

int luar_admin_read_filter(luar_admin_call_t *c, luar_job_filter_t *f, int state_default,
                           size_t default_limit, size_t max_limit)
{
    memset(f, 0, sizeof *f);
    f->state = state_default;
    const char *state = luar_admin_param(c, "state");
    if (state != NULL && *state != '\0' && strcmp(state, "any") != 0) {
        luar_job_state_t s;
        if (luar_job_state_parse(state, &s) != 0) {
            luar_admin_error(c, 400,
                             "state: unknown state \"%.64s\" (queued, scheduled, running, "
                             "succeeded, retrying, dead or any)",
                             state);
            return -1;
        }
        f->state = (int)s;
    } else if (state != NULL && strcmp(state, "any") == 0) {
        f->state = -1;
    }
    if (read_text(c, "queue", &f->queue) || read_text(c, "name", &f->name) ||
        read_text(c, "error", &f->error))
        return -1;
    luar_admin_param(c, "since");
    luar_admin_param(c, "until");
    if (bad_param(c))
        return -1;
    const char *names[2] = {"since", "until"};
    double *slots[2] = {&f->since, &f->until};
    for (int i = 0; i < 2; i++) {
        const char *v = luar_admin_param(c, names[i]);
        if (v == NULL || *v == '\0')
            continue;
        if (luar_tz_parse_time(v, slots[i]) != 0) {
            luar_admin_error(c, 400,
                             "%s: expected unix seconds or an ISO 8601 time "
                             "(2026-01-02T03:04:05Z), got \"%.64s\"",
                             names[i], v);
            return -1;
        }
    }
    if (f->since > 0 && f->until > 0 && f->until <= f->since) {
        luar_admin_error(c, 400, "until: must be later than since");
        return -1;
    }
    if (max_limit > 0) {
        long limit;
        if (luar_admin_read_count(c, "limit", (long)default_limit, 1, (long)max_limit, &limit))
            return -1;
        f->limit = (size_t)limit;
        if (read_text(c, "cursor", &f->cursor))
            return -1;
    }
    return 0;
}

static void json_member_str(luar_buf_t *b, int *first, const char *name, const char *v)
{
    if (v == NULL)
        return;
    luar_buf_appendf(b, "%s\"%s\":", *first ? "" : ",", name);
    luar_buf_append_json_string(b, v, strlen(v));
    *first = 0;
}

void luar_admin_filter_json(luar_buf_t *b, const luar_job_filter_t *f)
{
    int first = 1;
    luar_buf_puts(b, "\"filter\":{");
    if (f->state >= 0)
        json_member_str(b, &first, "state", luar_job_state_name((luar_job_state_t)f->state));
    json_member_str(b, &first, "queue", f->queue);
    json_member_str(b, &first, "name", f->name);
    json_member_str(b, &first, "error", f->error);
    if (f->since > 0) {
        luar_buf_appendf(b, "%s\"since\":%.3f", first ? "" : ",", f->since);
        first = 0;
    }
    if (f->until > 0)
        luar_buf_appendf(b, "%s\"until\":%.3f", first ? "" : ",", f->until);
    luar_buf_putc(b, '}');
}

/* ---- the audit log ------------------------------------------------------------------- */

void luar_admin_audit(const luar_admin_call_t *c, const char *action, const luar_buf_t *fields)
{
    luar_buf_t f, err;
    luar_buf_init(&f, 0);
    luar_buf_init(&err, 0);
    luar_buf_puts(&f, "\"remote\":");
    luar_buf_append_json_string(&f, c->req->remote_addr, strlen(c->req->remote_addr));
    luar_buf_puts(&f, ",\"request_id\":");
    luar_buf_append_json_string(&f, c->req->request_id, strlen(c->req->request_id));
    if (fields != NULL && fields->len > 0) {
        luar_buf_putc(&f, ',');
        luar_buf_append(&f, fields->data, fields->len);
    }
    int rc = f.data ? luar_audit_append("admin-api", action, f.data, f.len, &err) : LUAR_ENOMEM;
    if (rc != 0)
        luar_logf(LUAR_LOG_ERROR, "admin API: the audit record of %s could not be written: %s",
                  action, err.data ? err.data : luar_strerror(rc));
    luar_buf_free(&f);
    luar_buf_free(&err);
}
