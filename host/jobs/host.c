/* The process's queue backend and runner, as seen by the Lua modules. */
#include "jobs/jobs.h"

#include <stddef.h>

static luar_queue_t *host_queue;
static luar_runner_t *host_runner;
static luar_jobs_config_t default_cfg = {
    .lease = 30, .heartbeat = 10, .result_ttl = 86400, .dead_ttl = 2592000, .poll = 0.5,
    .concurrency = LUAR_JOBS_DEFAULT_CONCURRENCY,
};
static const luar_jobs_config_t *host_cfg = &default_cfg;

void luar_jobs_set_host(luar_queue_t *queue, luar_runner_t *runner,
                        const luar_jobs_config_t *cfg)
{
    host_queue = queue;
    host_runner = runner;
    host_cfg = cfg ? cfg : &default_cfg;
}

luar_queue_t *luar_jobs_queue(void)
{
    return host_queue;
}

const luar_jobs_config_t *luar_jobs_config(void)
{
    return host_cfg;
}

void luar_jobs_kick(void)
{
    if (host_runner)
        luar_runner_kick(host_runner);
}
