/*
 * The inbound webhook path (see ingest.h): body size, signature, events, one durable
 * enqueue per event (its handlers' jobs and its dedupe record in one commit), then the
 * answer. Nothing here enters Lua; sync routes hand the verified event to their runner.
 *
 * The rule the whole file keeps: a 2xx goes out only from on_enqueued's completion, which
 * the backend calls once the commit is on disk (or when the dedupe record says the event
 * was already stored). Every other path answers 4xx/5xx, and a provider retries those.
 */
#include "webhooks/ingest.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/json.h"
#include "crypto/crypto.h"
#include "jobs/jobs.h"
#include "log/log.h"
#include "queue/queue.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Handlers whose specs fit on the stack; more take a heap array. */
#define STACK_SPECS 16
/* Events asked from the scheme on the first try; a batch over it is read again on the heap. */
#define STACK_EVENTS 8
/* Reasons for a rejection are cut here (a scheme's or the JSON scanner's message). */
#define MAX_REASON 512
/* Deepest event accepted: stored one level down in the job's arguments, which luar.json
 * decodes with its limit of LUAR_JSON_MAX_DEPTH when the job runs. */
#define EVENT_MAX_DEPTH (LUAR_JSON_MAX_DEPTH - 2)

/* Headers never stored with a job, whatever the scheme: credentials. */
static const char *const credential_headers[] = {"authorization", "proxy-authorization", "cookie",
                                                 NULL};

struct luar_webhook_route {
    char *path;
    char *scheme_name; /* "none" without a scheme */
    luar_webhook_verifier_t verifier;
    int has_verifier;
    int verify;
    double dedupe;
    size_t max_body;
    int sync;
    /* Header names removed from meta.headers besides the scheme's signature headers. */
    char *strip[4];
    luar_webhook_handler_t *handlers;
    size_t nhandlers, cap;
    luar_webhook_sync_fn sync_fn;
    void *sync_arg;
};

/* ---- routes ------------------------------------------------------------------------- */

int luar_webhook_route_new(const luar_webhook_route_config_t *cfg, luar_webhook_route_t **out,
                           luar_buf_t *err)
{
    *out = NULL;
    luar_webhook_route_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LUAR_ENOMEM;
    r->path = strdup(cfg->path);
    r->scheme_name = strdup(cfg->scheme != NULL ? cfg->scheme : "none");
    r->verify = cfg->verify;
    r->dedupe = cfg->dedupe;
    r->max_body = cfg->max_body;
    r->sync = cfg->sync;
    size_t ns = 0;
    for (const char *const *c = credential_headers; *c != NULL; c++)
        r->strip[ns++] = strdup(*c);
    int rc = 0;
    for (size_t i = 0; i < ns; i++)
        if (r->strip[i] == NULL)
            rc = LUAR_ENOMEM;
    if (r->path == NULL || r->scheme_name == NULL)
        rc = LUAR_ENOMEM;
    if (rc == 0 && cfg->scheme != NULL && cfg->nsecrets > 0) {
        rc = luar_webhook_verifier_init(&r->verifier, cfg->scheme, cfg->secrets, cfg->secret_lens,
                                        cfg->nsecrets, cfg->opts, cfg->nopts, cfg->tolerance, err);
        r->has_verifier = rc == 0;
    }
    if (rc != 0) {
        luar_webhook_route_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void luar_webhook_route_free(luar_webhook_route_t *r)
{
    if (r == NULL)
        return;
    if (r->has_verifier)
        luar_webhook_verifier_free(&r->verifier);
    for (size_t i = 0; i < r->nhandlers; i++) {
        free(r->handlers[i].pattern);
        free(r->handlers[i].job);
        free(r->handlers[i].queue);
    }
    for (size_t i = 0; i < sizeof r->strip / sizeof r->strip[0]; i++)
        free(r->strip[i]);
    free(r->handlers);
    free(r->path);
    free(r->scheme_name);
    free(r);
}

const char *luar_webhook_route_path(const luar_webhook_route_t *r)
{
    return r->path;
}

const luar_webhook_verifier_t *luar_webhook_route_verifier(const luar_webhook_route_t *r)
{
    return r->has_verifier ? &r->verifier : NULL;
}

int luar_webhook_route_is_sync(const luar_webhook_route_t *r)
{
    return r->sync;
}

void luar_webhook_route_set_sync(luar_webhook_route_t *r, luar_webhook_sync_fn fn, void *arg)
{
    r->sync_fn = fn;
    r->sync_arg = arg;
}

int luar_webhook_route_add_handler(luar_webhook_route_t *r, const char *pattern, const char *job,
                                   const char *queue, int max_attempts, int priority, int fn_ref)
{
    if (r->nhandlers == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4;
        luar_webhook_handler_t *grown = realloc(r->handlers, cap * sizeof *grown);
        if (grown == NULL)
            return LUAR_ENOMEM;
        r->handlers = grown;
        r->cap = cap;
    }
    luar_webhook_handler_t *h = &r->handlers[r->nhandlers];
    h->pattern = strdup(pattern);
    h->job = strdup(job);
    h->queue = strdup(queue);
    h->max_attempts = max_attempts;
    h->priority = priority;
    h->fn_ref = fn_ref;
    if (h->pattern == NULL || h->job == NULL || h->queue == NULL) {
        free(h->pattern);
        free(h->job);
        free(h->queue);
        return LUAR_ENOMEM;
    }
    r->nhandlers++;
    return 0;
}

/* ---- pieces of a delivery ------------------------------------------------------------ */

static int listed(const char *const *list, const char *name, size_t len)
{
    for (; list != NULL && *list != NULL; list++)
        if (strlen(*list) == len && memcmp(*list, name, len) == 0)
            return 1;
    return 0;
}

int luar_webhook_headers_json(const luar_http_header_t *headers, size_t n,
                              const luar_webhook_verifier_t *v, const char *const *strip,
                              luar_buf_t *out)
{
    int rc = luar_buf_putc(out, '{');
    int first = 1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const luar_http_header_t *h = &headers[i];
        if (listed(strip, h->name, h->name_len) ||
            (v != NULL && luar_webhook_is_signature_header(v, h->name, h->name_len)))
            continue;
        int seen = 0; /* an earlier header of this name already carried every value */
        for (size_t j = 0; j < i && !seen; j++)
            seen = headers[j].name_len == h->name_len &&
                   memcmp(headers[j].name, h->name, h->name_len) == 0;
        if (seen)
            continue;
        if (!first)
            rc = luar_buf_putc(out, ',');
        first = 0;
        if (rc == 0)
            rc = luar_buf_append_json_string(out, h->name, h->name_len);
        if (rc == 0)
            rc = luar_buf_putc(out, ':');
        if (rc != 0)
            break;
        size_t more = 0;
        for (size_t j = i + 1; j < n; j++)
            more += headers[j].name_len == h->name_len &&
                    memcmp(headers[j].name, h->name, h->name_len) == 0;
        if (more == 0) {
            rc = luar_buf_append_json_string(out, h->value, h->value_len);
            continue;
        }
        luar_buf_t joined;
        luar_buf_init(&joined, out->max);
        rc = luar_buf_append(&joined, h->value, h->value_len);
        for (size_t j = i + 1; j < n && rc == 0; j++) {
            if (headers[j].name_len != h->name_len ||
                memcmp(headers[j].name, h->name, h->name_len) != 0)
                continue;
            rc = luar_buf_append(&joined, ", ", 2);
            if (rc == 0)
                rc = luar_buf_append(&joined, headers[j].value, headers[j].value_len);
        }
        if (rc == 0)
            rc = luar_buf_append_json_string(out, joined.data, joined.len);
        luar_buf_free(&joined);
    }
    if (rc == 0)
        rc = luar_buf_putc(out, '}');
    return rc;
}

int luar_webhook_generic_event(const char *body, size_t len, luar_webhook_event_t *ev,
                               luar_buf_t *scratch, luar_buf_t *why)
{
    if (luar_json_validate(body, len, EVENT_MAX_DEPTH, why) != 0)
        return LUAR_EPARSE;
    const char *val;
    size_t vlen;
    /* Offsets into scratch, which may move as it grows; pointers are set at the end. */
    size_t id_off = scratch->len, id_len = 0, type_off, type_len;
    if (luar_json_member(body, len, "id", &val, &vlen) && vlen > 0 && val[0] == '"') {
        if (luar_json_unquote(val, vlen, scratch) != 0)
            return LUAR_EPARSE;
        id_len = scratch->len - id_off;
    } else if (luar_json_member(body, len, "id", &val, &vlen) && vlen > 0 &&
               (val[0] == '-' || isdigit((unsigned char)val[0]))) {
        if (luar_buf_append(scratch, val, vlen) != 0)
            return LUAR_ENOMEM;
        id_len = vlen;
    }
    if (id_len == 0) {
        /* No id: the body's digest, so the same body delivered twice is one event. */
        uint8_t md[LUAR_CRYPTO_MAX_MD];
        size_t mdlen = 0;
        if (luar_crypto_digest("sha256", body, len, md, &mdlen) != 0 ||
            luar_hex_encode(scratch, md, mdlen) != 0)
            return LUAR_ENOMEM;
        id_len = scratch->len - id_off;
    }
    type_off = scratch->len;
    if (luar_json_member(body, len, "type", &val, &vlen) && vlen > 0 && val[0] == '"') {
        if (luar_json_unquote(val, vlen, scratch) != 0)
            return LUAR_EPARSE;
    }
    if (scratch->len == type_off && luar_buf_puts(scratch, "webhook") != 0)
        return LUAR_ENOMEM;
    type_len = scratch->len - type_off;
    memset(ev, 0, sizeof *ev);
    ev->id = scratch->data + id_off;
    ev->id_len = id_len;
    ev->type = scratch->data + type_off;
    ev->type_len = type_len;
    ev->json = body;
    ev->json_len = len;
    return 0;
}

/*
 * Nonzero when the event id is (part of) a signature header's value: `hmac` names an event
 * without an id by its signature. Such an id is kept out of log lines, which never carry a
 * signature.
 */
static int id_is_signature(const luar_webhook_route_t *r, const luar_http_req_t *req,
                           const char *id, size_t len)
{
    if (!r->has_verifier || id == NULL || len == 0)
        return 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const luar_http_header_t *h = &req->headers[i];
        if (luar_webhook_is_signature_header(&r->verifier, h->name, h->name_len) &&
            memmem(h->value, h->value_len, id, len) != NULL)
            return 1;
    }
    return 0;
}

/* ---- answers ------------------------------------------------------------------------- */

static const luar_http_header_t json_type = {"Content-Type", 12, "application/json", 16};

/* Appends `s` (length `len`) to a log or error text, cut at MAX_REASON bytes. */
static void reason_append(luar_buf_t *b, const char *s, size_t len)
{
    if (len > MAX_REASON)
        len = MAX_REASON;
    luar_buf_append(b, s, len);
}

/*
 * Answers a refused delivery: {"error": "<what>[: <reason>]"}, a log line with the reason,
 * the ring and the counter. `id` (may be NULL) is the event's id once verified. Neither
 * `what` nor `reason` ever holds a secret or a signature (schemes promise it for theirs).
 */
static void reject(luar_http_req_t *req, int status, const char *outcome, const char *what,
                   const char *reason, size_t reason_len, const char *id, size_t id_len)
{
    luar_buf_t msg, body, f;
    luar_buf_init(&msg, 0);
    luar_buf_init(&body, 0);
    luar_buf_init(&f, 0);
    luar_buf_puts(&msg, what);
    if (reason != NULL && reason_len > 0) {
        luar_buf_puts(&msg, ": ");
        reason_append(&msg, reason, reason_len);
    }
    luar_buf_puts(&body, "{\"error\":");
    luar_buf_append_json_string(&body, msg.data, msg.len);
    luar_buf_putc(&body, '}');

    luar_buf_puts(&f, "\"route\":");
    luar_buf_append_json_string(&f, req->route, strlen(req->route));
    luar_buf_appendf(&f, ",\"status\":%d,\"outcome\":\"%s\",\"reason\":", status, outcome);
    luar_buf_append_json_string(&f, msg.data, msg.len);
    if (id != NULL && id_len > 0) {
        luar_buf_puts(&f, ",\"event_id\":");
        luar_buf_append_json_string(&f, id, id_len);
    }
    luar_buf_puts(&f, ",\"request_id\":");
    luar_buf_append_json_string(&f, req->request_id, strlen(req->request_id));
    luar_buf_puts(&f, ",\"remote_addr\":");
    luar_buf_append_json_string(&f, req->remote_addr, strlen(req->remote_addr));
    luar_log_write(LUAR_LOG_WARN, "webhook rejected", 16, f.data, f.len);

    luar_webhook_record(req->route, id, id_len, NULL, 0, outcome, status, req->request_id);
    char retry[16];
    int rlen = snprintf(retry, sizeof retry, "%d", LUAR_WEBHOOK_RETRY_AFTER);
    luar_http_header_t h[2] = {json_type, {"Retry-After", 11, retry, (size_t)rlen}};
    luar_http_respond(req, status, h, status == 503 ? 2 : 1, body.data, body.len);
    luar_buf_free(&msg);
    luar_buf_free(&body);
    luar_buf_free(&f);
}

static void reject_text(luar_http_req_t *req, int status, const char *outcome, const char *what,
                        const luar_buf_t *why)
{
    reject(req, status, outcome, what, why->data, why->len, NULL, 0);
}

/* ---- a delivery in flight ------------------------------------------------------------ */

struct ingest;

/* One event of a delivery, waiting for its commit. */
struct ingest_event {
    struct ingest *in;
    char *id, *type; /* copies (the request's scratch is gone by the callback) */
    int id_is_sig;   /* the id is the signature (hmac without an id): not for log lines */
    size_t njobs;
    int rc;
    int duplicate;
};

struct ingest {
    luar_http_req_t *req; /* valid until answered: the server keeps it */
    size_t nevents;
    size_t pending; /* events whose enqueue has not called back, +1 while submitting */
    struct ingest_event ev[];
};

static void ingest_free(struct ingest *in)
{
    for (size_t i = 0; i < in->nevents; i++) {
        free(in->ev[i].id);
        free(in->ev[i].type);
    }
    free(in);
}

/* Every event's enqueue has answered: 200 when all are stored, else 503 for the lot. */
static void ingest_finish(struct ingest *in)
{
    luar_http_req_t *req = in->req;
    const struct ingest_event *failed = NULL;
    size_t jobs = 0, dups = 0;
    for (size_t i = 0; i < in->nevents; i++) {
        if (in->ev[i].rc != 0 && failed == NULL)
            failed = &in->ev[i];
        jobs += in->ev[i].duplicate ? 0 : in->ev[i].njobs;
        dups += in->ev[i].duplicate != 0;
    }
    if (failed != NULL) {
        /* The events stored already are recorded as such; a retry of the whole request
         * finds them as duplicates. */
        for (size_t i = 0; i < in->nevents; i++)
            if (in->ev[i].rc == 0)
                luar_webhook_record(req->route, in->ev[i].id, strlen(in->ev[i].id), in->ev[i].type,
                                    strlen(in->ev[i].type),
                                    in->ev[i].duplicate ? "duplicate" : "accepted", 503,
                                    req->request_id);
        luar_buf_t why;
        luar_buf_init(&why, 0);
        const char *detail = luar_queue_last_error(luar_jobs_queue());
        luar_buf_puts(&why, luar_strerror(failed->rc));
        if (detail != NULL && *detail) {
            luar_buf_puts(&why, " (");
            luar_buf_puts(&why, detail);
            luar_buf_putc(&why, ')');
        }
        /* The body says only that the backend is unavailable; the log line says why. */
        luar_buf_t f;
        luar_buf_init(&f, 0);
        luar_buf_puts(&f, "\"route\":");
        luar_buf_append_json_string(&f, req->route, strlen(req->route));
        luar_buf_puts(&f, ",\"status\":503,\"outcome\":\"rejected\",\"reason\":");
        luar_buf_append_json_string(&f, why.data, why.len);
        if (!failed->id_is_sig) {
            luar_buf_puts(&f, ",\"event_id\":");
            luar_buf_append_json_string(&f, failed->id, strlen(failed->id));
        }
        luar_buf_puts(&f, ",\"request_id\":");
        luar_buf_append_json_string(&f, req->request_id, strlen(req->request_id));
        luar_buf_puts(&f, ",\"remote_addr\":");
        luar_buf_append_json_string(&f, req->remote_addr, strlen(req->remote_addr));
        luar_log_write(LUAR_LOG_WARN, "webhook rejected", 16, f.data, f.len);
        luar_buf_free(&f);
        luar_buf_free(&why);
        luar_webhook_record(req->route, failed->id, strlen(failed->id), failed->type,
                            strlen(failed->type), "rejected", 503, req->request_id);
        static const char body[] =
            "{\"error\":\"the queue backend cannot take the event now; retry later\"}";
        char retry[16];
        int rlen = snprintf(retry, sizeof retry, "%d", LUAR_WEBHOOK_RETRY_AFTER);
        luar_http_header_t h[2] = {json_type, {"Retry-After", 11, retry, (size_t)rlen}};
        luar_http_respond(req, 503, h, 2, body, sizeof body - 1);
        ingest_free(in);
        return;
    }
    luar_buf_t body;
    luar_buf_init(&body, 0);
    if (in->nevents == 1) {
        luar_buf_puts(&body, "{\"received\":true,\"id\":");
        luar_buf_append_json_string(&body, in->ev[0].id, strlen(in->ev[0].id));
        if (in->ev[0].duplicate)
            luar_buf_puts(&body, ",\"duplicate\":true}");
        else
            luar_buf_appendf(&body, ",\"jobs\":%zu}", jobs);
    } else {
        luar_buf_appendf(&body,
                         "{\"received\":true,\"events\":%zu,\"duplicates\":%zu,"
                         "\"jobs\":%zu%s}",
                         in->nevents, dups, jobs, dups == in->nevents ? ",\"duplicate\":true" : "");
    }
    for (size_t i = 0; i < in->nevents; i++)
        luar_webhook_record(req->route, in->ev[i].id, strlen(in->ev[i].id), in->ev[i].type,
                            strlen(in->ev[i].type), in->ev[i].duplicate ? "duplicate" : "accepted",
                            200, req->request_id);
    luar_http_respond(req, 200, &json_type, 1, body.data, body.len);
    luar_buf_free(&body);
    ingest_free(in);
}

static void on_enqueued(void *arg, int rc, const char *const *ids, size_t n, int duplicate)
{
    struct ingest_event *e = arg;
    struct ingest *in = e->in;
    (void)ids;
    e->rc = rc;
    e->duplicate = rc == 0 && duplicate;
    if (rc == 0 && !duplicate && n > 0)
        luar_jobs_kick(); /* the runner looks now, not at its next poll */
    if (--in->pending == 0)
        ingest_finish(in);
}

/* ---- the path ------------------------------------------------------------------------ */

/* Nonzero when `s` holds a byte below 0x20 or DEL (NUL included). */
static int has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

/*
 * Nonzero when valid JSON text `s` nests arrays and objects deeper than `max`. Strings are
 * skipped with memchr (they are most of a webhook's bytes): a quote ends one unless an odd
 * run of backslashes precedes it.
 */
static int deeper_than(const char *s, size_t len, int max)
{
    int depth = 0;
    const char *p = s, *end = s + len;
    while (p < end) {
        char c = *p++;
        if (c == '"') {
            for (;;) {
                const char *q = memchr(p, '"', (size_t)(end - p));
                if (q == NULL)
                    return 0;
                size_t bs = 0;
                while (q - bs > p && q[-1 - (ptrdiff_t)bs] == '\\')
                    bs++;
                p = q + 1;
                if (bs % 2 == 0)
                    break;
            }
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return 1;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}

/*
 * Checks one event's id, type and JSON (`validated`: the scheme validated the JSON); on
 * failure appends the reason to `why`.
 */
static int check_event(const luar_webhook_event_t *ev, int validated, luar_buf_t *why)
{
    if (ev->id == NULL || ev->id_len == 0) {
        luar_buf_puts(why, "the event has no id");
        return LUAR_EPARSE;
    }
    if (ev->id_len > LUAR_WEBHOOK_MAX_ID || has_control(ev->id, ev->id_len)) {
        luar_buf_appendf(why, "the event id must be 1 to %d printable bytes", LUAR_WEBHOOK_MAX_ID);
        return LUAR_EPARSE;
    }
    if (ev->type == NULL || ev->type_len > LUAR_WEBHOOK_MAX_TYPE ||
        has_control(ev->type, ev->type_len)) {
        luar_buf_appendf(why, "the event type must be at most %d printable bytes",
                         LUAR_WEBHOOK_MAX_TYPE);
        return LUAR_EPARSE;
    }
    /* The event is stored inside the job's arguments ({"event": …}): one level deeper,
     * and it must decode within luar.json's depth limit when the job runs. The host's
     * schemes have validated the text already (at LUAR_JSON_MAX_DEPTH), so for them a
     * depth count is enough; a plugin's scheme is not trusted to have done it. */
    if (ev->json == NULL)
        return LUAR_EPARSE;
    if (!validated) {
        if (luar_json_validate(ev->json, ev->json_len, EVENT_MAX_DEPTH, why) != 0)
            return LUAR_EPARSE;
    } else if (deeper_than(ev->json, ev->json_len, EVENT_MAX_DEPTH)) {
        luar_buf_appendf(why, "the event nests deeper than %d levels", EVENT_MAX_DEPTH);
        return LUAR_EPARSE;
    }
    return 0;
}

/* Appends the job arguments of one event: {"event": <json>, "meta": {…}}. */
static int build_args(const luar_webhook_route_t *r, const luar_http_req_t *req,
                      const luar_webhook_event_t *ev, double received_at, const luar_buf_t *headers,
                      luar_buf_t *out)
{
    int rc = luar_buf_puts(out, "{\"event\":");
    if (rc == 0)
        rc = luar_buf_append(out, ev->json, ev->json_len);
    if (rc == 0)
        rc = luar_buf_puts(out, ",\"meta\":{\"id\":");
    if (rc == 0)
        rc = luar_buf_append_json_string(out, ev->id, ev->id_len);
    if (rc == 0)
        rc = luar_buf_puts(out, ",\"type\":");
    if (rc == 0)
        rc = luar_buf_append_json_string(out, ev->type, ev->type_len);
    if (rc == 0)
        rc = luar_buf_puts(out, ",\"route\":");
    if (rc == 0)
        rc = luar_buf_append_json_string(out, r->path, strlen(r->path));
    if (rc == 0)
        rc = luar_buf_puts(out, ",\"scheme\":");
    if (rc == 0)
        rc = luar_buf_append_json_string(out, r->scheme_name, strlen(r->scheme_name));
    /* %.6f of the time as whole seconds and microseconds: printf's exact decimal expansion
     * of a double is several times the cost of two integers. */
    long long us = (long long)(received_at * 1e6 + 0.5);
    if (rc == 0)
        rc = luar_buf_appendf(out, ",\"received_at\":%lld.%06lld,\"request_id\":", us / 1000000,
                              us % 1000000);
    if (rc == 0)
        rc = luar_buf_append_json_string(out, req->request_id, strlen(req->request_id));
    if (rc == 0)
        rc = luar_buf_puts(out, ",\"headers\":");
    if (rc == 0)
        rc = luar_buf_append(out, headers->data, headers->len);
    if (rc == 0)
        rc = luar_buf_puts(out, "}}");
    return rc;
}

/* The request's headers as the JSON object of meta.headers, built on first use into the
 * empty buffer `out` (once per request: every event of a batch shares them). */
static int request_headers(const luar_webhook_route_t *r, const luar_http_req_t *req,
                           luar_buf_t *out)
{
    if (out->len > 0)
        return 0;
    return luar_webhook_headers_json(req->headers, req->nheaders,
                                     r->has_verifier ? &r->verifier : NULL,
                                     (const char *const *)r->strip, out);
}

/* Answers a sync route: the first handler matching the (single) event runs inline. */
static void ingest_sync(luar_webhook_route_t *r, luar_http_req_t *req,
                        const luar_webhook_event_t *ev, const char *type, const char *args,
                        size_t args_len)
{
    const luar_webhook_handler_t *h = NULL;
    for (size_t i = 0; i < r->nhandlers && h == NULL; i++)
        if (luar_topic_match(r->handlers[i].pattern, type))
            h = &r->handlers[i];
    luar_webhook_record(req->route, ev->id, ev->id_len, ev->type, ev->type_len, "accepted",
                        h != NULL ? 0 : 200, req->request_id);
    if (h == NULL || r->sync_fn == NULL) {
        luar_buf_t body;
        luar_buf_init(&body, 0);
        luar_buf_puts(&body, "{\"received\":true,\"id\":");
        luar_buf_append_json_string(&body, ev->id, ev->id_len);
        luar_buf_puts(&body, ",\"handlers\":0}");
        luar_http_respond(req, 200, &json_type, 1, body.data, body.len);
        luar_buf_free(&body);
        return;
    }
    r->sync_fn(r->sync_arg, h, req, args, args_len);
}

/* Reads the request's events into `*evs` (the stack array, or a heap one for big batches). */
static int read_events(luar_webhook_route_t *r, const luar_webhook_msg_t *msg,
                       luar_webhook_event_t **evs, size_t *n, luar_buf_t *scratch, luar_buf_t *why)
{
    if (!r->has_verifier) {
        *n = 1;
        return luar_webhook_generic_event(msg->body, msg->body_len, *evs, scratch, why);
    }
    int rc = luar_webhook_events(&r->verifier, msg, *evs, STACK_EVENTS, n, scratch, why);
    if (rc != LUAR_ETOOBIG)
        return rc;
    luar_webhook_event_t *heap = malloc(LUAR_WEBHOOK_MAX_EVENTS * sizeof *heap);
    if (heap == NULL)
        return LUAR_ENOMEM;
    luar_buf_reset(scratch);
    luar_buf_reset(why);
    rc = luar_webhook_events(&r->verifier, msg, heap, LUAR_WEBHOOK_MAX_EVENTS, n, scratch, why);
    *evs = heap;
    return rc;
}

void luar_webhook_ingest(luar_webhook_route_t *r, luar_http_req_t *req)
{
    double received_at = luar_time_now();
    luar_webhook_msg_t msg = {req->headers, req->nheaders, req->body, req->body_len};
    luar_webhook_event_t stack_evs[STACK_EVENTS];
    luar_webhook_event_t *evs = stack_evs;
    luar_job_spec_t stack_specs[STACK_SPECS];
    luar_job_spec_t *specs = stack_specs;
    luar_buf_t why, scratch, headers, args, key;
    luar_buf_init(&why, 4096);
    luar_buf_init(&scratch, 0);
    luar_buf_init(&headers, 0);
    luar_buf_init(&args, 0);
    luar_buf_init(&key, 0);
    size_t nev = 0;

    if (r->max_body > 0 && req->body_len > r->max_body) {
        luar_buf_appendf(&why, "%zu bytes; this route takes at most %zu", req->body_len,
                         r->max_body);
        reject_text(req, 413, "rejected", "body too large", &why);
        goto done;
    }
    if (r->verify) {
        luar_webhook_verdict_t v = luar_webhook_verify(&r->verifier, &msg, received_at, &why);
        if (v != LUAR_WEBHOOK_OK) {
            const char *what = v == LUAR_WEBHOOK_MISSING   ? "missing signature"
                               : v == LUAR_WEBHOOK_EXPIRED ? "expired signature"
                                                           : "invalid signature";
            reject_text(req, 401, luar_webhook_verdict_outcome(v), what, &why);
            goto done;
        }
    }
    int rc = read_events(r, &msg, &evs, &nev, &scratch, &why);
    if (rc == LUAR_ETOOBIG) {
        luar_buf_reset(&why);
        luar_buf_appendf(&why, "more than %d events in one request", LUAR_WEBHOOK_MAX_EVENTS);
        reject_text(req, 413, "rejected", "too many events", &why);
        goto done;
    }
    if (rc != 0) {
        reject_text(req, 400, "malformed", "malformed body", &why);
        goto done;
    }
    if (nev == 0) {
        reject_text(req, 400, "malformed", "malformed body: the request carries no event", &why);
        goto done;
    }
    /* The host's schemes validate the body before reading it; plugins' are not trusted to. */
    const luar_webhook_scheme_t *scheme = r->has_verifier ? r->verifier.scheme : NULL;
    int validated = scheme == NULL || scheme == &luar_webhook_scheme_standard ||
                    scheme == &luar_webhook_scheme_hmac;
    for (size_t i = 0; i < nev; i++) {
        if (check_event(&evs[i], validated, &why) != 0) {
            int loggable = evs[i].id != NULL && evs[i].id_len <= LUAR_WEBHOOK_MAX_ID &&
                           !id_is_signature(r, req, evs[i].id, evs[i].id_len);
            reject(req, 400, "malformed", "malformed body", why.data, why.len, evs[i].id,
                   loggable ? evs[i].id_len : 0);
            goto done;
        }
        if (evs[i].reply) {
            /* A handshake (Slack's url_verification): answered now, nothing stored. */
            luar_webhook_record(req->route, evs[i].id, evs[i].id_len, evs[i].type, evs[i].type_len,
                                "accepted", 200, req->request_id);
            luar_http_respond(req, 200, &json_type, 1, evs[i].json, evs[i].json_len);
            goto done;
        }
    }
    if (r->sync) {
        if (nev != 1) {
            reject(req, 400, "malformed",
                   "malformed body: a sync route takes one event per "
                   "request",
                   NULL, 0, NULL, 0);
            goto done;
        }
        char *type = strndup(evs[0].type, evs[0].type_len);
        if (type == NULL || request_headers(r, req, &headers) != 0 ||
            build_args(r, req, &evs[0], received_at, &headers, &args) != 0)
            reject(req, 503, "rejected", "out of memory", NULL, 0, NULL, 0);
        else
            ingest_sync(r, req, &evs[0], type, args.data, args.len);
        free(type);
        goto done;
    }

    luar_queue_t *q = luar_jobs_queue();
    if (q == NULL) {
        reject(req, 503, "rejected", "no queue backend in this process", NULL, 0, NULL, 0);
        goto done;
    }
    struct ingest *in = calloc(1, sizeof *in + nev * sizeof in->ev[0]);
    if (in == NULL) {
        reject(req, 503, "rejected", "out of memory", NULL, 0, NULL, 0);
        goto done;
    }
    in->req = req;
    in->nevents = nev;
    in->pending = nev + 1; /* +1: no answer before every event is submitted */
    if (r->nhandlers > STACK_SPECS) {
        specs = malloc(r->nhandlers * sizeof *specs);
        if (specs == NULL) {
            ingest_free(in);
            reject(req, 503, "rejected", "out of memory", NULL, 0, NULL, 0);
            goto done;
        }
    }
    for (size_t i = 0; i < nev; i++) {
        struct ingest_event *e = &in->ev[i];
        const luar_webhook_event_t *ev = &evs[i];
        e->in = in;
        e->id = strndup(ev->id, ev->id_len);
        e->type = strndup(ev->type, ev->type_len);
        e->id_is_sig = id_is_signature(r, req, ev->id, ev->id_len);
        luar_buf_reset(&args);
        luar_buf_reset(&key);
        rc = e->id == NULL || e->type == NULL ? LUAR_ENOMEM : 0;
        if (rc == 0 && r->dedupe > 0) {
            rc = luar_buf_appendf(&key, "webhook:%s:", r->path);
            if (rc == 0)
                rc = luar_buf_append(&key, ev->id, ev->id_len);
        }
        size_t n = 0;
        for (size_t h = 0; rc == 0 && h < r->nhandlers; h++) {
            const luar_webhook_handler_t *hd = &r->handlers[h];
            if (!luar_topic_match(hd->pattern, e->type))
                continue;
            specs[n] = (luar_job_spec_t){.name = hd->job,
                                         .queue = hd->queue,
                                         .priority = hd->priority,
                                         .max_attempts = hd->max_attempts};
            n++;
        }
        /* Nothing to store (no handler takes the type and deduplication is off): no
         * commit to wait for, so no trip through the backend (an empty transaction). */
        if (rc == 0 && n == 0 && r->dedupe <= 0) {
            in->pending--;
            continue;
        }
        /* The arguments (and the headers they carry) only for an event some handler
         * takes: one no handler matches stores its dedupe record alone. */
        if (rc == 0 && n > 0 && (rc = request_headers(r, req, &headers)) == 0)
            rc = build_args(r, req, ev, received_at, &headers, &args);
        /* The handlers' attempts are spans under the request's (trace/trace.h). */
        char tp[LUAR_TRACEPARENT_LEN + 1];
        luar_trace_format(&req->trace, tp);
        for (size_t j = 0; j < n; j++) {
            specs[j].args = args.data;
            specs[j].trace = tp;
        }
        e->njobs = n;
        /* Zero jobs (no handler matches the type) still records the id: the event was
         * received, and a redelivery is a duplicate. */
        if (rc == 0)
            rc = luar_queue_enqueue(q, specs, n, r->dedupe > 0 ? key.data : NULL, r->dedupe,
                                    on_enqueued, e);
        if (rc != 0) {
            e->rc = rc; /* the callback will not run */
            in->pending--;
        }
    }
    if (--in->pending == 0)
        ingest_finish(in);

done:
    if (specs != stack_specs)
        free(specs);
    if (evs != stack_evs)
        free(evs);
    luar_buf_free(&why);
    luar_buf_free(&scratch);
    luar_buf_free(&headers);
    luar_buf_free(&args);
    luar_buf_free(&key);
}
