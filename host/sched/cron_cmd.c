/*
 * `luar cron next EXPR [--tz TZ] [--from ISO8601] [--count N]` (SPEC §2, §8): the next N
 * fire times of an expression, strictly after --from (default: now), one ISO 8601
 * timestamp with offset a line, in the schedule's zone (default UTC).
 */
#include "common/error.h"
#include "common/clock.h"
#include "sched/cron.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMD "luar cron next"

static void usage(FILE *f)
{
    fputs("usage: luar cron next EXPR [--tz TZ] [--from ISO8601] [--count N]\n"
          "  EXPR     5 fields (min hour dom mon dow), 6 with seconds first, or an alias\n"
          "           such as @daily; quote it\n"
          "  --tz     IANA zone (Europe/London), UTC or an offset (+05:30); default UTC\n"
          "  --from   print times strictly after this one (default: now); without an\n"
          "           offset it is local time in --tz\n"
          "  --count  how many times to print, 1-1000; default 1\n",
          f);
}

int luar_cron_cmd_next(int argc, char **argv)
{
    const char *tz = "UTC", *from = NULL, *count_arg = NULL;
    luar_buf_t expr, err;
    luar_buf_init(&expr, 4096);
    luar_buf_init(&err, 0);
    int status = 2;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            status = 0;
            goto done;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if ((expr.len && luar_buf_putc(&expr, ' ')) || luar_buf_puts(&expr, arg)) {
                fprintf(stderr, CMD ": EXPR: too long\n");
                goto done;
            }
            continue;
        }
        const char *names[] = {"--tz", "--from", "--count"};
        const char **slots[] = {&tz, &from, &count_arg};
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        int k = 0;
        while (k < 3 && !(strlen(names[k]) == name_len && strncmp(arg, names[k], name_len) == 0))
            k++;
        if (k == 3) {
            fprintf(stderr, CMD ": unknown option %.*s\n", (int)name_len, arg);
            goto done;
        }
        if (!eq && i + 1 >= argc) {
            fprintf(stderr, CMD ": %s needs a value\n", names[k]);
            goto done;
        }
        *slots[k] = eq ? eq + 1 : argv[++i];
    }
    if (expr.len == 0) {
        fprintf(stderr, CMD ": missing EXPR (for example \"0 9 * * *\")\n");
        usage(stderr);
        goto done;
    }

    long count = 1;
    if (count_arg) {
        char *end;
        count = strtol(count_arg, &end, 10);
        if (*count_arg == '\0' || *end || count < 1 || count > LUAR_CRON_MAX_COUNT) {
            fprintf(stderr, CMD ": --count: \"%s\" is not a number from 1 to %d\n", count_arg,
                    LUAR_CRON_MAX_COUNT);
            goto done;
        }
    }
    luar_cron_t cron;
    if (luar_cron_parse(expr.data, &cron, &err)) {
        fprintf(stderr, CMD ": EXPR: %s\n", err.data ? err.data : "invalid expression");
        goto done;
    }
    const luar_tz_t *zone;
    if (luar_tz_load(tz, &zone, &err)) {
        fprintf(stderr, CMD ": --tz: %s\n", err.data ? err.data : "unknown time zone");
        goto done;
    }
    int64_t after = (int64_t)luar_time_now();
    if (from && luar_tz_parse_iso(from, zone, &after, &err)) {
        fprintf(stderr, CMD ": --from: %s\n", err.data);
        goto done;
    }
    for (long i = 0; i < count; i++) {
        int64_t next;
        char line[LUAR_TZ_ISO_SIZE];
        if (luar_cron_next_in(&cron, zone, after, &next) ||
            luar_tz_format(zone, next, line, sizeof line)) {
            fprintf(stderr, CMD ": EXPR: \"%s\" does not fire again before the year 10000\n",
                    expr.data);
            goto done;
        }
        puts(line);
        after = next;
    }
    status = fflush(stdout) == 0 ? 0 : 1;
done:
    luar_buf_free(&expr);
    luar_buf_free(&err);
    return status;
}
