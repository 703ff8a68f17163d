/* The per-VM registry of job definitions and schedules, and topic matching for events. */
#include "jobs/jobs.h"
#include "common/error.h"
#include "lua/vm_internal.h"

#include <stdlib.h>
#include <string.h>

struct luar_jobs_registry {
    luar_job_def_t *defs;
    size_t ndefs;
    luar_schedule_t *schedules;
    size_t nschedules;
};

luar_jobs_registry_t *luar_jobs_registry(luar_vm_t *vm)
{
    if (vm->jobs == NULL)
        vm->jobs = calloc(1, sizeof *vm->jobs);
    return vm->jobs;
}

static void free_def(luar_job_def_t *d)
{
    free(d->name);
    free(d->queue);
    free(d->pattern);
}

static void free_schedule(luar_schedule_t *s);

void luar_jobs_registry_free(luar_jobs_registry_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->ndefs; i++)
        free_def(&r->defs[i]);
    for (size_t i = 0; i < r->nschedules; i++)
        free_schedule(&r->schedules[i]);
    free(r->defs);
    free(r->schedules);
    free(r);
}

int luar_jobs_define(luar_jobs_registry_t *r, luar_job_def_t *def)
{
    if (luar_jobs_find(r, def->name)) {
        free_def(def);
        return LUAR_EEXISTS;
    }
    luar_job_def_t *d = realloc(r->defs, (r->ndefs + 1) * sizeof *d);
    if (d == NULL) {
        free_def(def);
        return LUAR_ENOMEM;
    }
    r->defs = d;
    r->defs[r->ndefs++] = *def;
    return 0;
}

const luar_job_def_t *luar_jobs_find(const luar_jobs_registry_t *r, const char *name)
{
    for (size_t i = 0; r && i < r->ndefs; i++)
        if (strcmp(r->defs[i].name, name) == 0)
            return &r->defs[i];
    return NULL;
}

size_t luar_jobs_count(const luar_jobs_registry_t *r)
{
    return r ? r->ndefs : 0;
}

const luar_job_def_t *luar_jobs_at(const luar_jobs_registry_t *r, size_t i)
{
    return &r->defs[i];
}


static void free_schedule(luar_schedule_t *s)
{
    free(s->name);
    free(s->expr);
    free(s->tz);
    free(s->job);
    free(s->args);
    free(s->cron);
}

int luar_jobs_add_schedule(luar_jobs_registry_t *r, luar_schedule_t *s)
{
    for (size_t i = 0; i < r->nschedules; i++) {
        if (strcmp(r->schedules[i].name, s->name) == 0) {
            free_schedule(s);
            return LUAR_EEXISTS;
        }
    }
    luar_schedule_t *list = realloc(r->schedules, (r->nschedules + 1) * sizeof *list);
    if (list == NULL) {
        free_schedule(s);
        return LUAR_ENOMEM;
    }
    r->schedules = list;
    r->schedules[r->nschedules++] = *s;
    return 0;
}

size_t luar_jobs_schedules(const luar_jobs_registry_t *r)
{
    return r ? r->nschedules : 0;
}

const luar_schedule_t *luar_jobs_schedule_at(const luar_jobs_registry_t *r, size_t i)
{
    return &r->schedules[i];
}

/* Matches pattern words from `p` against topic words from `t` (recursive on '#'). */
static int match_words(const char *p, const char *t)
{
    for (;;) {
        const char *pe = strchr(p, '.');
        size_t plen = pe ? (size_t)(pe - p) : strlen(p);
        if (plen == 1 && p[0] == '#') {
            if (pe == NULL)
                return 1; /* '#' at the end eats the rest, even nothing */
            /* '#' eats zero or more words: try every split. */
            const char *rest = pe + 1;
            for (const char *tt = t;;) {
                if (match_words(rest, tt))
                    return 1;
                const char *te = strchr(tt, '.');
                if (te == NULL || *tt == '\0')
                    return 0;
                tt = te + 1;
            }
        }
        if (*t == '\0')
            return 0;
        const char *te = strchr(t, '.');
        size_t tlen = te ? (size_t)(te - t) : strlen(t);
        if (!(plen == 1 && p[0] == '*') && (plen != tlen || strncmp(p, t, plen) != 0))
            return 0;
        if (pe == NULL || te == NULL)
            return pe == NULL && te == NULL;
        p = pe + 1;
        t = te + 1;
    }
}

int luar_topic_match(const char *pattern, const char *topic)
{
    return match_words(pattern, topic);
}
