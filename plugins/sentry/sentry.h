/*
 * The Sentry plugin's shared state and the functions its files give each other. One state
 * per process (plugins are initialised once per serving process); loop thread only.
 */
#ifndef SENTRY_H
#define SENTRY_H

#include "frames.h"
#include "sb.h"

#include <luar/plugin.h>

#define SENTRY_VERSION "0.1.0"
#define SENTRY_CLIENT "luar-sentry/" SENTRY_VERSION
#define SENTRY_MAX_BREADCRUMBS 100
#define SENTRY_MAX_TAGS 50
#define SENTRY_MAX_VALUE 8192 /* exception values and messages are cut here */

/* Rate-limit categories (X-Sentry-Rate-Limits): errors (and default) and transactions. */
enum { SENTRY_CAT_ERROR = 0, SENTRY_CAT_TRANSACTION = 1, SENTRY_NCATS = 2 };

/* Outcomes, the values of luar_sentry_events_total's `outcome` label. */
enum { SENTRY_SENT = 0, SENTRY_DROPPED, SENTRY_RATE_LIMITED, SENTRY_FAILED, SENTRY_NOUTCOMES };

typedef struct sentry_pending {
    struct sentry_pending *next;
    char event_id[33];
    int cat;
    char *body; /* the item's payload, redacted */
    size_t len;
} sentry_pending_t;

typedef struct sentry_tag {
    char *key, *value;
} sentry_tag_t;

typedef struct sentry {
    const luar_host_t *h;
    /* configuration */
    char *dsn;
    char *url;  /* <scheme>://<host>/api/<project>/envelope/ */
    char *auth; /* the X-Sentry-Auth value */
    char *environment, *release, *server_name;
    size_t max_breadcrumbs;
    size_t queue_size;
    double timeout;
    double shutdown_timeout; /* seconds the last sends may take when the host drains */
    double traces_sample_rate;
    int log_events; /* error-level log lines become events */
    /* scope set from Lua (sentry.set_tag, sentry.set_user): process-wide */
    sentry_tag_t tags[SENTRY_MAX_TAGS];
    size_t ntags;
    char *user; /* JSON object, or NULL */
    /* breadcrumbs: a ring of rendered JSON objects, oldest at `crumb_head` */
    char **crumbs;
    size_t ncrumbs, crumb_head;
    /* transport */
    sentry_pending_t *head, *tail;
    size_t queued;
    luar_plugin_http_call_t *call; /* the one request in flight */
    luar_plugin_timer_t *timer;    /* wakes the queue after a backoff */
    double limited_until[SENTRY_NCATS];
    double backoff, backoff_until;
    luar_metric_t *events;
    double warned_at;
    unsigned long unwarned_failures;
    int stopping;                    /* the host is draining (on_stop) */
    int drained;                     /* ... and the last sends are over: drop */
    luar_plugin_timer_t *stop_timer; /* ends the last sends at shutdown_timeout */
} sentry_t;

/* transport.c */
int sentry_dsn_parse(sentry_t *s, const char *dsn, char *err, size_t err_size);
/* Takes `event` (redacted here) for sending; returns SENTRY_SENT when it was queued, or
 * the outcome it was counted under (dropped, rate_limited). `event` is left empty. */
int sentry_transport_submit(sentry_t *s, const char *event_id, int cat, sentry_sb_t *event);
void sentry_transport_stop(sentry_t *s);
/* The host drains: what is queued may leave for shutdown_timeout seconds, then the rest is
 * dropped and the request in flight cancelled. */
void sentry_transport_drain(sentry_t *s);
void sentry_count(sentry_t *s, int outcome);
/* Sentry's rate-limit headers applied to s->limited_until at `now` (exposed for tests). */
void sentry_rate_limits(sentry_t *s, double now, long status, const char *retry_after,
                        const char *limits);

/* event.c */
void sentry_event_id(sentry_t *s, char out[33]);
void sentry_iso_time(double t, char out[32]);
/* Opens an event object with its common members; the caller adds the rest and closes it
 * with sentry_event_end (which adds scope tags plus `tags`, user, breadcrumbs). */
void sentry_event_begin(sentry_t *s, sentry_sb_t *b, const char *event_id, double ts,
                        const char *level, const char *logger);
/* Extra tags of one event: keys and JSON values (quoted strings), NULL-terminated pairs. */
void sentry_event_end(sentry_t *s, sentry_sb_t *b, const char *const *tags, const char *user_json,
                      int breadcrumbs);
/* {"type":…,"value":…,"mechanism":…,"stacktrace":…} from a message and a traceback. */
void sentry_exception_json(sentry_sb_t *b, const char *type, const char *message,
                           const char *traceback, const char *mechanism, int handled);
/* A log line (host format) as a breadcrumb, kept in the ring. */
void sentry_breadcrumb_add(sentry_t *s, int level, const char *line, size_t len);
void sentry_breadcrumbs_free(sentry_t *s);
/* An error-level log line as a message event (0: sent to the transport, or -1: skipped). */
int sentry_log_event(sentry_t *s, const char *line, size_t len);
/* An uncaught error as an event. */
void sentry_error_event(sentry_t *s, const luar_plugin_error_t *e);

/* transaction.c: a span that ended (requests and job attempts become transactions, their
 * outbound calls child spans); the pool of waiting child spans freed at fini. */
void sentry_span_ended(sentry_t *s, const luar_plugin_span_t *sp);
void sentry_transactions_free(void);

#endif
