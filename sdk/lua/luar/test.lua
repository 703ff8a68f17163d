---@meta
-- luar.test: the doubles of `luar test` (only there: `require "luar.test"` in a spec). See
-- docs/testing.md. Before every test the stubs, recorded requests, captured logs, the
-- clock's offset, the queue (a temporary SQLite one) and luar.cache are reset.

---@class luar.test
---@field clock luar.test.clock
---@field jobs luar.test.jobs
---@field http luar.test.http
local test = {}

---@class luar.test.clock
local clock = {}

---The test clock: real time plus the offset (time keeps flowing). Same as luar.time.now().
---@return number unix seconds
function clock.now() end

---⏸ Moves the clock forward: every cron tick of every schedule in (old, new] is enqueued
---(once, not run), and delayed and retrying jobs whose time has come become due.
---@param seconds number at least 0
---@return number now the new time
function clock.advance(seconds) end

---⏸ Puts the clock at `unix` (a jump: no tick of the time skipped is enqueued; use
---advance for that).
---@param unix number
---@return number now
function clock.set(unix) end

---@class luar.test.jobs
local jobs = {}

---@class luar.test.DrainOptions
---@field max? integer attempts at most (default 1000)

---@class luar.test.JobError
---@field id string
---@field name string
---@field error string

---@class luar.test.DrainReport
---@field ran integer attempts that ended
---@field succeeded integer
---@field failed integer
---@field errors luar.test.JobError[] one per failed attempt

---⏸ Runs every due job inline through the real runner (retries, dead letter), the jobs
---they enqueue too when due, until none is due and none runs. Never raises for a job's
---failure: read the report.
---@param opts? luar.test.DrainOptions
---@return luar.test.DrainReport
function jobs.drain(opts) end

---@class luar.test.Job
---@field id string
---@field name string
---@field queue string
---@field args any decoded JSON arguments
---@field run_at number unix seconds the job is (or was) due
---@field attempts integer attempts started so far
---@field state "queued"|"scheduled"|"retrying"|"dead"
---@field error? string the last attempt's error

---⏸ Jobs waiting (queued, scheduled, retrying), oldest first; of one name when given.
---@param name? string
---@return luar.test.Job[]
function jobs.enqueued(name) end

---⏸ Dead jobs (out of attempts), oldest first; of one name when given.
---@param name? string
---@return luar.test.Job[]
function jobs.dead(name) end

---@class luar.test.http
local http = {}

---@class luar.test.Response
---@field status? integer default 200
---@field json? any encoded as the body, with content-type application/json
---@field body? string
---@field headers? table<string, string>

---@class luar.test.Request
---@field method string
---@field url string
---@field headers table<string, string> lower-case names
---@field body string
---@field json fun(self?: luar.test.Request): any, luar.Error? the decoded body

---@class luar.test.StubOptions
---@field times? integer answers before the stub stops matching

---@class luar.test.Stub
---@field method string
---@field pattern string
---@field calls integer requests it answered

---Stubs outbound requests at the client's one-attempt entry point (luar.http with its
---retries, breaker, cache and rate limit, and plugins all meet it). `method` "*" matches
---any; `*` in the pattern matches any run of characters; the most recently added matching
---stub wins. A list of responses is served in order, the last one repeating. A request no
---stub matches raises "luar.test: no stub for METHOD URL" and fails the test at its end
---even when caught.
---@param method string
---@param url_pattern string
---@param response luar.test.Response|luar.test.Response[]|fun(req: luar.test.Request): luar.test.Response
---@param opts? luar.test.StubOptions
---@return luar.test.Stub
function http.stub(method, url_pattern, response, opts) end

---Every outbound request since the test started, in order (stubbed or not); only those
---whose URL matches the pattern when given.
---@param url_pattern? string
---@return luar.test.Request[]
function http.requests(url_pattern) end

---Lets requests whose URL matches reach the network.
---@param url_pattern string
function http.passthrough(url_pattern) end

---@class luar.test.WebhookOptions
---@field secret? string signs with this secret instead of the route's
---@field id? string the event/message id the scheme signs (default: a new one per call)
---@field timestamp? number unix seconds signed (default: the test clock's now)
---@field headers? table<string, string> extra or replacing request headers
---@field tamper? boolean corrupts the signature (the route answers 401)

---@class luar.test.HttpResponse
---@field status integer
---@field headers table<string, string> lower-case names
---@field body string
---@field json fun(self?: luar.test.HttpResponse): any, luar.Error? the decoded body

---⏸ Signs `event` (a table, sent as JSON, or a string body) for `scheme` with the route's
---configured secret and POSTs it over a real socket to the test process's router (limits,
---verification, dedupe, storage). The handler jobs are enqueued; t.jobs.drain() runs them.
---@param route string the webhooks.route path, e.g. "/hooks/stripe"
---@param scheme string "standard", "hmac", "stripe", "github", …
---@param event table|string
---@param opts? luar.test.WebhookOptions
---@return luar.test.HttpResponse
function test.webhook(route, scheme, event, opts) end

---@class luar.test.RequestOptions
---@field headers? table<string, string>
---@field query? table<string, any>|string
---@field body? string
---@field json? any encoded as the body, with content-type application/json

---⏸ Sends a plain request to the scripts' routes over a real socket.
---@param method string
---@param path string starting with "/"
---@param opts? luar.test.RequestOptions
---@return luar.test.HttpResponse
function test.request(method, path, opts) end

---@class luar.test.LogRecord
---@field level "debug"|"info"|"warn"|"error"
---@field msg string
---@field ts string
---@field [string] any the record's fields

---Log records captured since the test started (they are not printed); `match` is a plain
---substring of msg, or a table of fields that must be equal.
---@param match? string|table<string, any>
---@return luar.test.LogRecord[]
function test.logs(match) end

return test
