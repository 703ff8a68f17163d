/*
 * `luar jobs stats|list|show|retry|delete|purge` and `luar enqueue` (SPEC §2): inspect and
 * repair the queue through the backend interface (queue/queue.h), whether or not a server
 * runs on it. Each call opens the backend named by cfg->queue on a private loop, runs one
 * operation (bounded by a timeout), closes the backend and prints. Human-readable output
 * by default; `--json` prints one JSON document instead.
 */
#ifndef LUAR_CLI_JOBS_CMD_H
#define LUAR_CLI_JOBS_CMD_H

#include "config/config.h"

/*
 * Runs `luar jobs SUB [options]`. argv[0] is the subcommand ("stats", "list", "show",
 * "retry", "delete", "purge"); argv[1..argc-1] are its arguments and options only (the
 * global flags --config/--data/--scripts were consumed by the caller; here `--queue Q`
 * is a queue name). Options take their value as `--opt V` or `--opt=V`. Prints the result
 * to stdout and errors as one line (plus a usage line for usage errors) to stderr. Returns
 * the exit status: 0 success, 1 runtime failure (job not found, backend unreachable), 2
 * usage error. The caller keeps `argv` and `cfg`.
 */
int luar_cli_jobs(int argc, char **argv, const luar_config_t *cfg);

/*
 * Runs `luar enqueue NAME [--args JSON] [--queue Q] [--delay SECONDS] [--key KEY]
 * [--priority P] [--max-attempts N] [--json]`. argv[0] is NAME (or an option; options and
 * NAME may come in any order). As jobs.enqueue does, the job gets the queue, priority and
 * retries of its jobs.define when cfg->scripts holds a main.lua declaring it (the scripts
 * are loaded for that; options override). Prints the job id, followed by " (existing job)"
 * when --key matched an unfinished job. Same exit statuses and ownership as luar_cli_jobs.
 */
int luar_cli_enqueue(int argc, char **argv, const luar_config_t *cfg);

#endif
