/*
 * Reload on file change: inotify (uv_fs_event) on the scripts folder and each sub-folder,
 * debounced so that an editor's burst of writes leads to one reload. New sub-folders are
 * picked up at the next reload's rescan.
 */
#include "app/app.h"
#include "common/error.h"
#include "log/log.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DIRS 256

struct luar_watch {
    uv_loop_t *loop;
    char *dir;
    uv_fs_event_t events[MAX_DIRS];
    int nevents;
    int closing; /* handles still to close before the watch is freed */
    uv_timer_t debounce;
    uint64_t debounce_ms;
    luar_reload_fn reload;
    void *ctx;
};

static void on_debounce(uv_timer_t *t)
{
    luar_watch_t *w = t->data;
    luar_logf(LUAR_LOG_INFO, "change under %s: reloading", w->dir);
    w->reload(w->ctx, NULL, NULL); /* the reload logs its own outcome */
}

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status)
{
    luar_watch_t *w = h->data;
    (void)filename;
    (void)events;
    if (status == 0)
        uv_timer_start(&w->debounce, on_debounce, w->debounce_ms, 0);
}

static void add_dir(luar_watch_t *w, const char *path, int depth)
{
    if (w->nevents >= MAX_DIRS || depth > 8)
        return;
    uv_fs_event_t *h = &w->events[w->nevents];
    uv_fs_event_init(w->loop, h);
    h->data = w;
    /* Counted even when it fails to start, so luar_watch_close closes every handle. */
    w->nevents++;
    if (uv_fs_event_start(h, on_change, path, 0))
        return;
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        struct stat st;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            add_dir(w, sub, depth + 1);
    }
    closedir(d);
}

int luar_watch_open(uv_loop_t *loop, const char *dir, double debounce, luar_reload_fn reload,
                    void *ctx, luar_watch_t **out)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return LUAR_EIO;
    luar_watch_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return LUAR_ENOMEM;
    w->loop = loop;
    w->dir = strdup(dir);
    w->reload = reload;
    w->ctx = ctx;
    w->debounce_ms = (uint64_t)(debounce * 1000);
    uv_timer_init(loop, &w->debounce);
    w->debounce.data = w;
    add_dir(w, dir, 0);
    *out = w;
    return 0;
}

static void watch_handle_closed(uv_handle_t *h)
{
    luar_watch_t *w = h->data;
    if (--w->closing == 0) {
        free(w->dir);
        free(w);
    }
}

void luar_watch_close(luar_watch_t *w)
{
    if (w == NULL)
        return;
    w->closing = w->nevents + 1;
    for (int i = 0; i < w->nevents; i++)
        uv_close((uv_handle_t *)&w->events[i], watch_handle_closed);
    uv_close((uv_handle_t *)&w->debounce, watch_handle_closed);
}
