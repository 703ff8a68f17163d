---@meta
-- luar.github (plugin `github`): GitHub's REST API on top of luar.http (token auth, Link
-- pagination, rate limits waited out), and the `github` webhook scheme
-- (X-Hub-Signature-256). See plugins/github/README.md.

---@class luar.github
---@field version string the plugin's version
local github = {}

---@class luar.github.ClientOptions
---@field token? string personal access token, installation token or GITHUB_TOKEN (default: plugins.github.token unless app is given; none: unauthenticated)
---@field app? {id: integer|string, private_key: string, installation_id?: integer|string} authenticate as a GitHub App (JWT from the PEM RSA key), as its installation when installation_id is given (tokens minted and renewed automatically)
---@field base_url? string default "https://api.github.com" (GitHub Enterprise Server: "https://HOST/api/v3")
---@field api_version? string X-GitHub-Api-Version (default "2022-11-28")
---@field user_agent? string default "luar-github/<version>" (GitHub refuses requests without one)
---@field max_wait? number seconds one call may spend waiting for rate limits (default 60); a longer wait fails at once with err.kind "rate_limited"
---@field rate_limit_retries? integer rate-limited answers retried per call (default 3)
---@field timeout? number|{connect?: number, total?: number} luar.http's
---@field retry? false|luar.RetryOptions luar.http's (default: 5xx of idempotent calls; 403/429 rate limits are handled by the client)
---@field breaker? boolean|luar.BreakerOptions
---@field rate? string client-side rate limit, e.g. "5000/h"
---@field rate_max_wait? number seconds a call may wait for the client-side rate limit (luar.http's, default 30)
---@field cache? luar.CacheOptions ETag revalidation (GitHub does not count 304s against the limit)
---@field ca? string
---@field proxy? string

---@class luar.github.RequestOptions
---@field query? table<string, string|number|boolean|(string|number)[]>
---@field json? any the body, as JSON
---@field body? string a raw body
---@field headers? table<string, string>
---@field timeout? number|{connect?: number, total?: number}

---@class luar.github.Error: luar.Error
---@field documentation_url? string from GitHub's error body
---@field errors? table[] GitHub's `errors` (422 Validation Failed: {resource, field, code})
---@field request_id? string X-GitHub-Request-Id

---@class luar.github.Client
local Client = {}

---⏸ Any call. `path` is relative to base_url ("repos/octo/hello/issues") or an absolute URL
---on the same origin (others return err.kind "invalid": the token never leaves). Returns
---the decoded JSON body (`true` when the answer has none, the text when it is not JSON)
---and the response; or nil, err: kind "http" (status >= 400, GitHub's message,
---documentation_url, errors), "rate_limited" (the wait would pass max_wait; retry_after
---says how long), or luar.http's transport kinds. Rate limits within max_wait are waited
---out (the coroutine sleeps; nothing blocks).
---@param method string
---@param path string
---@param opts? luar.github.RequestOptions
---@return any|nil data
---@return luar.http.ClientResponse|luar.github.Error|nil res_or_err
function Client:request(method, path, opts) end

---⏸ GET with `query`.
---@param path string
---@param query? table
---@param opts? luar.github.RequestOptions
---@return any|nil data
---@return luar.http.ClientResponse|luar.github.Error|nil res_or_err
function Client:get(path, query, opts) end

---⏸ POST with `body` as JSON.
---@param path string
---@param body? any
---@param opts? luar.github.RequestOptions
---@return any|nil data
---@return luar.http.ClientResponse|luar.github.Error|nil res_or_err
function Client:post(path, body, opts) end

---⏸ PUT with `body` as JSON.
---@param path string
---@param body? any
---@param opts? luar.github.RequestOptions
---@return any|nil data
---@return luar.http.ClientResponse|luar.github.Error|nil res_or_err
function Client:put(path, body, opts) end

---⏸ PATCH with `body` as JSON.
---@param path string
---@param body? any
---@param opts? luar.github.RequestOptions
---@return any|nil data
---@return luar.http.ClientResponse|luar.github.Error|nil res_or_err
function Client:patch(path, body, opts) end

---⏸ DELETE (with `body` as JSON when given).
---@param path string
---@param body? any
---@param opts? luar.github.RequestOptions
---@return any|nil data
---@return luar.http.ClientResponse|luar.github.Error|nil res_or_err
function Client:delete(path, body, opts) end

---⏸ Iterates over every item of a paginated list, following `Link: <…>; rel="next"`:
---`for issue, err in gh:paginate("repos/o/r/issues", { per_page = 100 }) do … end`. Pages
---that are objects ({"total_count", "items": […]}) yield the items of their one list. A
---failure yields `false, err` once, then the loop ends: test `if not issue then`.
---@param path string
---@param query? table sent with the first page (the next links carry it on)
---@param opts? luar.github.RequestOptions
---@return fun(): any|false|nil, luar.github.Error|nil
function Client:paginate(path, query, opts) end

---Makes a client. Raises on wrong option types.
---@param opts? luar.github.ClientOptions
---@return luar.github.Client
function github.client(opts) end

return github
