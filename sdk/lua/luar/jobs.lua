---@meta
-- luar.jobs: durable background jobs and schedules. See docs/jobs.md.

---@class luar.jobs
local jobs = {}

---@class luar.JobOptions
---@field queue? string queue name (default "default")
---@field retries? integer retries after the first attempt (default 3: four attempts in all)
---@field backoff? "exponential"|number|fun(attempt: integer): number seconds before a retry; "exponential" = uniform(0, min(cap, 2^attempt)) (full jitter)
---@field backoff_cap? number cap of the exponential backoff in seconds (default 3600)
---@field timeout? number seconds an attempt may take; over it the attempt fails
---@field unique_for? number seconds: identical name+args give the id of the unfinished job
---@field rate? string "N/s", "N/m", "N/h", "N/d": at most that many starts per worker
---@field priority? integer higher runs first among due jobs

---@class luar.JobContext
---@field id string
---@field name string
---@field queue string
---@field attempt integer 1 for the first attempt
---@field max_attempts integer
---@field enqueued_at number unix seconds
---@field scheduled_at number unix seconds the job was due (the cron tick for schedules)

---Defines a job. Raising an error fails the attempt (retried per `retries`); the return
---value is stored as the result (JSON). Return `jobs.retry_in(s)` to run again later
---without counting a failure.
---@param name string
---@param opts luar.JobOptions|fun(args: table, job: luar.JobContext): any
---@param fn? fun(args: table, job: luar.JobContext): any
function jobs.define(name, opts, fn) end

---@class luar.EnqueueOptions
---@field delay? number seconds from now
---@field at? number unix time to run at
---@field key? string unique key: while a job with this key is unfinished, its id is returned
---@field queue? string overrides the definition's queue
---@field priority? integer overrides the definition's priority

---⏸ Enqueues a job durably: returns once it is committed.
---@param name string
---@param args? table JSON-encodable arguments (default: an empty table)
---@param opts? luar.EnqueueOptions
---@return string|nil id
---@return luar.Error|nil err kind "backend" when the queue cannot take it
function jobs.enqueue(name, args, opts) end

---@class luar.Job
---@field id string
---@field name string
---@field queue string
---@field state "queued"|"scheduled"|"running"|"succeeded"|"retrying"|"dead"
---@field attempts integer attempts started so far
---@field max_attempts integer
---@field args any
---@field key? string the unique key it was enqueued with
---@field priority integer
---@field result? any
---@field last_error? string
---@field traceback? string
---@field enqueued_at number
---@field run_at number
---@field started_at? number
---@field finished_at? number

---⏸ Reads a job.
---@param id string
---@return luar.Job|nil job
---@return luar.Error|nil err kind "not_found" or "backend"
function jobs.get(id) end

---The value a job returns to be put back and run again in `seconds`, without counting a
---failure (e.g. a provider answered 429 with Retry-After).
---@param seconds number
---@return any
function jobs.retry_in(seconds) end

---@class luar.ScheduleOptions
---@field tz? string IANA time zone (default "UTC")
---@field catch_up? boolean fire the most recent tick missed while no process ran

---Declares a cron schedule: `expr` has 5 fields (min hour dom mon dow) or 6 (seconds
---first), or is @hourly/@daily/@weekly/@monthly/@yearly. Each tick enqueues `job` once
---across every worker and instance sharing the backend.
---@param name string
---@param expr string
---@param job string
---@param args? table
---@param opts? luar.ScheduleOptions
function jobs.cron(name, expr, job, args, opts) end

---Declares a schedule every `seconds` (ticks aligned to multiples of `seconds` since the
---epoch, so every process agrees on them).
---@param name string
---@param seconds number at least 1
---@param job string
---@param args? table
---@param opts? luar.ScheduleOptions
function jobs.every(name, seconds, job, args, opts) end

return jobs
