/* The host's own metrics: build info, reload outcomes, and the families of subsystems that
 * should be listed before their first sample. */
#include "app/app.h"
#include "luar_version.h"
#include "metrics/metrics.h"
#include "ratelimit/ratelimit.h"

#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static luar_metric_t *reloads;

void luar_app_metrics_init(void)
{
    static const char *version_label[] = {"version"};
    static const char *outcome_label[] = {"outcome"};
    static const char *version_value[] = {LUAR_VERSION};
    luar_metric_t *info = NULL;
    if (luar_metrics_register(LUAR_METRIC_GAUGE, "luar_build_info",
                              "Luar build information; always 1.", version_label, 1, NULL, 0,
                              &info, NULL) == 0)
        luar_metric_set(info, version_value, 1);
    if (luar_metrics_register(LUAR_METRIC_COUNTER, "luar_script_reloads_total",
                              "Script loads and reloads by outcome (success, failure).",
                              outcome_label, 1, NULL, 0, &reloads, NULL) == 0) {
        static const char *success[] = {"success"}, *failure[] = {"failure"};
        /* Both series exist from the start, so a rate() over them is defined. */
        luar_metric_add(reloads, success, 0);
        luar_metric_add(reloads, failure, 0);
    }
    luar_ratelimit_metrics_init();
}

void luar_app_count_reload(int ok)
{
    static const char *success[] = {"success"}, *failure[] = {"failure"};
    if (reloads)
        luar_metric_add(reloads, ok ? success : failure, 1);
}

/* ---- process metrics, sampled at each scrape ---------------------------------------- */

/*
 * The families every Prometheus client library exports (process_*), read from /proc as
 * they do, plus the Lua heaps. Sampled when /metrics is asked, so they cost nothing between
 * scrapes. A value /proc does not give (another kernel, a sandbox) is left out, not zero.
 */
static struct {
    int ready;
    luar_metric_t *cpu, *rss, *vsize, *fds, *max_fds, *start, *lua;
    double cpu_seen; /* seconds already added to the counter */
} proc;

static void process_metrics_register(void)
{
    static const struct {
        luar_metric_type_t type;
        const char *name, *help;
        luar_metric_t **out;
    } fams[] = {
        {LUAR_METRIC_COUNTER, "process_cpu_seconds_total",
         "Total user and system CPU time spent in seconds.", &proc.cpu},
        {LUAR_METRIC_GAUGE, "process_resident_memory_bytes", "Resident memory size in bytes.",
         &proc.rss},
        {LUAR_METRIC_GAUGE, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
         &proc.vsize},
        {LUAR_METRIC_GAUGE, "process_open_fds", "Number of open file descriptors.", &proc.fds},
        {LUAR_METRIC_GAUGE, "process_max_fds", "Maximum number of open file descriptors.",
         &proc.max_fds},
        {LUAR_METRIC_GAUGE, "process_start_time_seconds",
         "Start time of the process since unix epoch in seconds.", &proc.start},
        {LUAR_METRIC_GAUGE, "luar_lua_memory_bytes",
         "Bytes held by the Lua VMs of this process (the serving generation and those still "
         "finishing after a reload).",
         &proc.lua},
    };
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++)
        if (luar_metrics_register(fams[i].type, fams[i].name, fams[i].help, NULL, 0, NULL, 0,
                                  fams[i].out, NULL))
            *fams[i].out = NULL;
    proc.ready = 1;
}

/* Fields 14 (utime), 15 (stime), 22 (starttime), 23 (vsize), 24 (rss) of /proc/self/stat. */
static int read_stat(double *cpu, double *start_ticks, double *vsize, double *rss_pages)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (p == NULL)
        return -1;
    p++;
    while (*p == ' ')
        p++;
    if (*p == '\0')
        return -1;
    p++; /* field 3, the state: one letter */
    unsigned long long v[22]; /* v[k - 4] is field k, from field 4 (ppid) on */
    int got = 0;
    while (got < 21) {
        char *end;
        v[got] = strtoull(p, &end, 10);
        if (end == p)
            return -1;
        got++;
        p = end;
    }
    double hz = (double)sysconf(_SC_CLK_TCK);
    *cpu = (double)(v[14 - 4] + v[15 - 4]) / hz;
    *start_ticks = (double)v[22 - 4];
    *vsize = (double)v[23 - 4];
    *rss_pages = (double)v[24 - 4];
    return 0;
}

static double boot_time(void)
{
    char line[256];
    double btime = -1;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "btime ", 6) == 0) {
            btime = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return btime;
}

static double count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void luar_app_metrics_sample(size_t lua_bytes)
{
    if (!proc.ready)
        process_metrics_register();
    double cpu, start_ticks, vsize, rss_pages;
    if (read_stat(&cpu, &start_ticks, &vsize, &rss_pages) == 0) {
        if (proc.cpu && cpu > proc.cpu_seen) {
            luar_metric_add(proc.cpu, NULL, cpu - proc.cpu_seen);
            proc.cpu_seen = cpu;
        }
        if (proc.vsize)
            luar_metric_set(proc.vsize, NULL, vsize);
        if (proc.rss)
            luar_metric_set(proc.rss, NULL, rss_pages * (double)sysconf(_SC_PAGESIZE));
        double btime = boot_time();
        if (proc.start && btime > 0)
            luar_metric_set(proc.start, NULL, btime + start_ticks / (double)sysconf(_SC_CLK_TCK));
    }
    double fds = count_fds();
    if (proc.fds && fds >= 0)
        luar_metric_set(proc.fds, NULL, fds);
    struct rlimit rl;
    if (proc.max_fds && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        luar_metric_set(proc.max_fds, NULL, (double)rl.rlim_cur);
    if (proc.lua)
        luar_metric_set(proc.lua, NULL, (double)lua_bytes);
}
