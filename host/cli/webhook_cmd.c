/*
 * `luar webhook sign|send`: the scheme's own sign() produces the headers, so every scheme
 * in the registry (the host's and the plugins') works here without code of its own. `send`
 * POSTs with the host's outbound client (client/client.h) on a private loop, one attempt:
 * a developer firing a test event wants to see the answer, not a retry schedule.
 */
#include "cli/webhook_cmd.h"
#include "client/client.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/error.h"
#include "config/config.h"
#include "log/log.h"
#include "plugin/loader.h"
#include "secrets/secrets.h"
#include "server/http.h"
#include "webhooks/scheme.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define BODY_MAX (16u * 1024 * 1024)
#define MAX_OPTIONS 32
#define MAX_HEADERS 64

typedef struct wh_args {
    const char *cmd; /* "webhook sign" or "webhook send": the prefix of every message */
    int send;
    const char *scheme, *secret, *timestamp, *id, *url, *timeout, *file, *config;
    luar_webhook_opt_t opts[MAX_OPTIONS];
    char *opt_storage[MAX_OPTIONS]; /* "key\0value" copies owned here */
    size_t nopts;
    const char *headers[MAX_HEADERS]; /* --header lines as given */
    size_t nheaders;
} wh_args_t;

static void usage(FILE *f)
{
    luar_buf_t list;
    luar_buf_init(&list, 0);
    luar_webhook_scheme_list(&list);
    fprintf(f,
            "usage: luar webhook sign --scheme S --secret X [--timestamp T] [--id ID]\n"
            "                         [--option KEY=VALUE]... [--config F] [FILE]\n"
            "       luar webhook send --scheme S --secret X --url URL [--header 'Name: value']...\n"
            "                         [--timestamp T] [--id ID] [--option KEY=VALUE]...\n"
            "                         [--timeout SECONDS] [--config F] [FILE]\n"
            "The body is read from FILE, or from stdin when FILE is absent or \"-\".\n"
            "Schemes: %s\n",
            list.data ? list.data : "");
    luar_buf_free(&list);
}

static void args_free(wh_args_t *a)
{
    for (size_t i = 0; i < a->nopts; i++)
        free(a->opt_storage[i]);
}

/* Returns 0, or 2 after printing what is wrong. */
static int parse(int argc, char **argv, wh_args_t *a)
{
    static const struct {
        const char *name;
        size_t off;
        int send_only;
    } single[] = {
        {"--scheme", offsetof(wh_args_t, scheme), 0},
        {"--secret", offsetof(wh_args_t, secret), 0},
        {"--timestamp", offsetof(wh_args_t, timestamp), 0},
        {"--id", offsetof(wh_args_t, id), 0},
        {"--url", offsetof(wh_args_t, url), 1},
        {"--timeout", offsetof(wh_args_t, timeout), 1},
        {"--config", offsetof(wh_args_t, config), 0},
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        if (strncmp(arg, "--", 2) != 0 || strcmp(arg, "--") == 0 || arg[2] == '\0') {
            if (strcmp(arg, "--") == 0 && i + 1 < argc)
                arg = argv[++i];
            if (a->file) {
                fprintf(stderr, "luar %s: unexpected argument %s (one FILE at most)\n",
                        a->cmd, arg);
                return 2;
            }
            a->file = arg;
            continue;
        }
        char name[32];
        const char *value = NULL;
        const char *eq = strchr(arg, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
            value = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", arg);
            if (i + 1 < argc)
                value = argv[++i];
        }
        if (value == NULL) {
            fprintf(stderr, "luar %s: %s needs a value\n", a->cmd, name);
            return 2;
        }
        int found = 0;
        for (size_t k = 0; k < sizeof single / sizeof single[0]; k++) {
            if (strcmp(name, single[k].name) != 0 || (single[k].send_only && !a->send))
                continue;
            const char **slot = (const char **)((char *)a + single[k].off);
            if (*slot) {
                fprintf(stderr, "luar %s: %s given twice\n", a->cmd, name);
                return 2;
            }
            *slot = value;
            found = 1;
        }
        if (!found && strcmp(name, "--option") == 0) {
            const char *sep = strchr(value, '=');
            if (sep == NULL || sep == value) {
                fprintf(stderr, "luar %s: --option expects KEY=VALUE, not \"%s\"\n", a->cmd,
                        value);
                return 2;
            }
            if (a->nopts == MAX_OPTIONS) {
                fprintf(stderr, "luar %s: more than %d --option\n", a->cmd, MAX_OPTIONS);
                return 2;
            }
            char *copy = strdup(value);
            if (copy == NULL)
                return 2;
            copy[sep - value] = '\0';
            a->opt_storage[a->nopts] = copy;
            a->opts[a->nopts].key = copy;
            a->opts[a->nopts].value = copy + (sep - value) + 1;
            a->nopts++;
            found = 1;
        } else if (!found && a->send && strcmp(name, "--header") == 0) {
            const char *colon = strchr(value, ':');
            if (colon == NULL || colon == value || strpbrk(value, "\r\n")) {
                fprintf(stderr, "luar %s: --header expects 'Name: value', not \"%s\"\n",
                        a->cmd, value);
                return 2;
            }
            if (a->nheaders == MAX_HEADERS) {
                fprintf(stderr, "luar %s: more than %d --header\n", a->cmd, MAX_HEADERS);
                return 2;
            }
            a->headers[a->nheaders++] = value;
            found = 1;
        }
        if (!found) {
            fprintf(stderr, "luar %s: unknown option %s\n", a->cmd, name);
            return 2;
        }
    }
    if (a->scheme == NULL) {
        fprintf(stderr, "luar %s: --scheme is required (one of: ", a->cmd);
        luar_buf_t list;
        luar_buf_init(&list, 0);
        luar_webhook_scheme_list(&list);
        fprintf(stderr, "%s)\n", list.data ? list.data : "");
        luar_buf_free(&list);
        return 2;
    }
    if (a->secret == NULL) {
        fprintf(stderr, "luar %s: --secret is required\n", a->cmd);
        return 2;
    }
    if (a->send && a->url == NULL) {
        fprintf(stderr, "luar %s: --url is required\n", a->cmd);
        return 2;
    }
    return 0;
}

/* Reads FILE (or stdin) into `body`. Returns 0, or 2 after printing why. */
static int read_body(const wh_args_t *a, luar_buf_t *body)
{
    int from_stdin = a->file == NULL || strcmp(a->file, "-") == 0;
    FILE *f = from_stdin ? stdin : fopen(a->file, "rb");
    if (f == NULL) {
        fprintf(stderr, "luar %s: cannot read %s: %s\n", a->cmd, a->file, strerror(errno));
        return 2;
    }
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = luar_buf_append(body, chunk, n);
    int failed = ferror(f);
    if (!from_stdin)
        fclose(f);
    if (rc == LUAR_ETOOBIG) {
        fprintf(stderr, "luar %s: the body in %s is larger than %u bytes\n", a->cmd,
                from_stdin ? "stdin" : a->file, BODY_MAX);
        return 2;
    }
    if (rc || failed) {
        fprintf(stderr, "luar %s: cannot read %s\n", a->cmd, from_stdin ? "stdin" : a->file);
        return 2;
    }
    return 0;
}

/* Signs the body; `out` receives the scheme's "Name: value\r\n" lines. Returns 0 or 2. */
static int sign_body(const wh_args_t *a, const luar_buf_t *body, luar_buf_t *out)
{
    double ts = luar_time_now();
    if (a->timestamp) {
        char *end = NULL;
        errno = 0;
        ts = strtod(a->timestamp, &end);
        if (end == a->timestamp || *end != '\0' || errno || !isfinite(ts) || ts < 0) {
            fprintf(stderr, "luar %s: --timestamp expects unix seconds, not \"%s\"\n", a->cmd,
                    a->timestamp);
            return 2;
        }
    }
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int status = 0;
    int rc = luar_webhook_sign_with_secret(a->scheme, a->secret, a->opts, a->nopts, a->id, ts,
                                           body->data ? body->data : "", body->len, out, &err);
    if (rc) {
        fprintf(stderr, "luar %s: %s\n", a->cmd, err.data ? err.data : luar_strerror(rc));
        if (rc == LUAR_ENOTFOUND) /* the plugin that has it may have been refused */
            luar_plugins_print_refused(stderr);
        status = 2;
    }
    luar_buf_free(&err);
    return status;
}

typedef struct send_state {
    luar_client_res_t *res;
} send_state_t;

static void send_done(void *arg, luar_client_res_t *res)
{
    send_state_t *st = arg;
    st->res = res;
}

/* Splits "Name: value\r\n…" (signed) into client headers pointing into `lines` (edited). */
static size_t split_lines(char *lines, luar_client_header_t *h, size_t max)
{
    size_t n = 0;
    char *p = lines;
    while (p && *p && n < max) {
        char *eol = strstr(p, "\r\n");
        char *colon = strchr(p, ':');
        if (eol == NULL || colon == NULL || colon > eol)
            break;
        *colon = '\0';
        *eol = '\0';
        char *value = colon + 1;
        while (*value == ' ')
            value++;
        h[n].name = p;
        h[n].value = value;
        n++;
        p = eol + 2;
    }
    return n;
}

static int do_send(const wh_args_t *a, uv_loop_t *loop, const luar_buf_t *body,
                   luar_buf_t *signed_lines)
{
    luar_client_header_t headers[MAX_HEADERS + 16];
    size_t n = split_lines(signed_lines->data, headers, 16);
    /* --header lines, copied so the name can be cut at the colon */
    char *copies[MAX_HEADERS];
    int has_type = 0;
    for (size_t i = 0; i < a->nheaders; i++) {
        copies[i] = strdup(a->headers[i]);
        char *colon = copies[i] ? strchr(copies[i], ':') : NULL;
        if (colon == NULL) {
            headers[n].name = "";
            continue;
        }
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        headers[n].name = copies[i];
        headers[n].value = value;
        has_type |= strcasecmp(copies[i], "content-type") == 0;
        n++;
    }
    if (!has_type) {
        headers[n].name = "Content-Type";
        headers[n].value = "application/json";
        n++;
    }
    double timeout = 0;
    if (a->timeout) {
        char *end = NULL;
        timeout = strtod(a->timeout, &end);
        if (end == a->timeout || *end != '\0' || !(timeout > 0) || !isfinite(timeout)) {
            fprintf(stderr, "luar %s: --timeout expects seconds, not \"%s\"\n", a->cmd,
                    a->timeout);
            for (size_t i = 0; i < a->nheaders; i++)
                free(copies[i]);
            return 2;
        }
    }
    luar_client_req_t req = {
        .method = "POST",
        .url = a->url,
        .headers = headers,
        .nheaders = n,
        .body = body->data ? body->data : "",
        .body_len = body->len,
        .timeout = timeout,
    };
    send_state_t st = {NULL};
    int status = 1;
    int rc = luar_client_request(loop, &req, send_done, &st, NULL);
    for (size_t i = 0; i < a->nheaders; i++)
        free(copies[i]);
    if (rc) {
        fprintf(stderr, "luar %s: cannot send to %s: %s\n", a->cmd, a->url,
                luar_strerror(rc));
        status = rc == LUAR_EINVAL ? 2 : 1;
    } else {
        while (st.res == NULL && uv_run(loop, UV_RUN_ONCE))
            ;
    }
    if (st.res && st.res->rc == 0) {
        printf("%ld %s\n", st.res->status, luar_http_status_text((int)st.res->status));
        if (st.res->body.len) {
            fwrite(st.res->body.data, 1, st.res->body.len, stdout);
            if (st.res->body.data[st.res->body.len - 1] != '\n')
                putchar('\n');
        }
        status = st.res->status >= 200 && st.res->status < 300 ? 0 : 1;
    } else if (st.res) {
        fprintf(stderr, "luar %s: %s: %s\n", a->cmd, st.res->kind ? st.res->kind : "error",
                st.res->message);
    }
    luar_client_res_free(st.res);
    return status;
}

/*
 * The configuration (--config F, else ./luar.conf.lua) and the plugins, whose schemes join
 * the registry. Returns 0, or 2 after printing why.
 */
static int load_plugins(const wh_args_t *a, uv_loop_t *loop, luar_config_t *cfg)
{
    luar_config_flags_t flags = {.config = a->config};
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int status = 0;
    if (luar_config_load(cfg, &flags, &err)) {
        fprintf(stderr, "%s", err.data ? err.data : "configuration error\n");
        luar_buf_free(&err);
        return 2;
    }
    luar_secrets_load(cfg->secrets_file, &cfg->secrets_key, &err);
    luar_buf_reset(&err);
    /* stdout carries the signed headers (or the answer): only errors may join them */
    luar_log_set_level(LUAR_LOG_ERROR);
    if (luar_plugins_load(cfg, loop, &err)) {
        luar_plugins_print_errors(stderr, err.data ? err.data : "plugins failed");
        status = 2;
    }
    luar_buf_free(&err);
    return status;
}

int luar_cli_webhook(int argc, char **argv)
{
    if (argc < 1 || (strcmp(argv[0], "sign") != 0 && strcmp(argv[0], "send") != 0)) {
        if (argc >= 1 && (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0 ||
                          strcmp(argv[0], "help") == 0)) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "luar webhook: expected \"sign\" or \"send\"%s%s\n",
                argc >= 1 ? ", not " : "", argc >= 1 ? argv[0] : "");
        usage(stderr);
        return 2;
    }
    wh_args_t a;
    memset(&a, 0, sizeof a);
    a.send = strcmp(argv[0], "send") == 0;
    a.cmd = a.send ? "webhook send" : "webhook sign";
    /* The plugins first, so the known schemes listed by usage and errors include theirs:
     * --config is looked for before the other arguments are checked. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            a.config = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            a.config = argv[i] + 9;
    }
    luar_buf_t body, lines;
    luar_buf_init(&body, BODY_MAX);
    luar_buf_init(&lines, 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_config_t cfg;
    int status = load_plugins(&a, &loop, &cfg);
    int have_cfg = status == 0;
    a.config = NULL; /* parse() reads it again (and refuses it twice) */
    if (status == 0) {
        status = parse(argc, argv, &a);
        if (status < 0) /* --help */
            status = -1;
    }
    if (status == 0)
        status = read_body(&a, &body);
    if (status == 0)
        status = sign_body(&a, &body, &lines);
    if (status == 0 && !a.send) {
        /* the scheme writes HTTP's CRLF; a terminal wants plain lines */
        for (const char *p = lines.data; p && *p;) {
            const char *eol = strstr(p, "\r\n");
            size_t len = eol ? (size_t)(eol - p) : strlen(p);
            printf("%.*s\n", (int)len, p);
            p += len + (eol ? 2 : 0);
        }
    } else if (status == 0) {
        status = do_send(&a, &loop, &body, &lines);
    }
    luar_plugins_unload();
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "luar %s: the loop did not close cleanly\n", a.cmd);
    if (have_cfg) {
        luar_secrets_unload();
        luar_config_free(&cfg);
    }
    luar_buf_free(&body);
    luar_buf_free(&lines);
    args_free(&a);
    return status < 0 ? 0 : status;
}
