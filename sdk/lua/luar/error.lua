---@meta
-- luar.error: the one error shape of the API. Every function that can fail for a reason
-- outside the caller's control (network, provider, backend) returns `nil, err` with `err` a
-- luar.Error; misuse (wrong argument types, unknown options) raises instead.
-- `tostring(err)` gives one readable line: "kind: message (status N)".

---The error every module returns as the second value of `nil, err`. `kind` says what
---happened; the other fields are present when the kind (or the module) has them:
---
---| kind | from | fields |
---| --- | --- | --- |
---| "timeout" | luar.http and every client on it | |
---| "connect" | refused, DNS failure, reset (luar.http) | |
---| "tls" | handshake or certificate failure (luar.http) | |
---| "too_large" | a response over `max_body` (luar.http) | |
---| "http" | an answer >= 400 with `raise_for_status`, or a plugin's API error | status, retry_after; plugins add their own (stripe: type, code, decline_code, param, doc_url, request_id, raw; github: documentation_url, errors, request_id; sendgrid: field, help, errors) |
---| "breaker_open" | luar.http: the host's circuit breaker is open | retry_after |
---| "rate_limited" | luar.http `rate` over `rate_max_wait`; github, slack | retry_after, status |
---| "invalid" | bad input found at run time (bad URL, undecodable JSON, sendgrid message) | field (sendgrid) |
---| "private_address" | webhooks.deliver to a non-public address | |
---| "backend" | the queue, cache or Redis backend cannot answer | |
---| "not_found" | luar.jobs.get of an unknown id | |
---| "redis" | luar.redis: the server answered an error | code ("ERR", "WRONGTYPE", …) |
---| "locked" | luar.redis.lock gave up waiting | |
---| "invalid_signature" / "expired" | luar.webhooks.verify, luar.shopify | |
---| "oauth" | luar.oauth | code ("not_connected", "insufficient_scope", "expired", "invalid_grant", "timeout", "revoke_failed", "jwks_unavailable", "invalid_id_token", the token endpoint's error or "http_<status>"), provider, account, missing, status |
---| "slack" | luar.slack: the Web API said ok = false | code, response |
---| "s3" | luar.s3: S3 answered an error | status, code, request_id, s3_message, operation, upload_id, aborted, abort_error |
---| "io" | luar.s3: a local file could not be read or written | |
---@class luar.Error
---@field kind "timeout"|"connect"|"tls"|"too_large"|"http"|"breaker_open"|"rate_limited"|"invalid"|"private_address"|"backend"|"not_found"|"redis"|"locked"|"invalid_signature"|"expired"|"oauth"|"slack"|"s3"|"io"|string
---@field message string one readable line that names what failed
---@field status? integer the HTTP status ("http", "rate_limited", "s3", "oauth")
---@field retry_after? number seconds to wait before trying again ("breaker_open", "rate_limited", a 429 or 503 with Retry-After)
---@field code? string a machine-readable code: Redis's first word, the OAuth code, Slack's, S3's or Stripe's error code
---@field request_id? string the provider's request id (stripe, github, s3)
---@field field? string the field at fault (sendgrid "invalid")
---@field provider? string "oauth": the provider's name
---@field account? string "oauth": the account
---@field missing? string[] "oauth" insufficient_scope: the scopes not granted

---@class luar.error
local lerror = {}

---Makes `fields` an error like every module's (tostring gives "kind: message (status N)")
---and returns it: the same table, its other fields kept. Raises when kind or message is
---not a string, or when the table already has a metatable.
---@param fields {kind: string, message: string, [string]: any}
---@return luar.Error
function lerror.new(fields) end

---Returns nil and a new error {kind, message, ...fields} (fields copied): the usual
---`return lerror.fail("http", "card declined", { status = 402 })`.
---@param kind string
---@param message string
---@param fields? table
---@return nil
---@return luar.Error
function lerror.fail(kind, message, fields) end

---True when `v` is an error made by a luar module or by lerror.new.
---@param v any
---@return boolean
function lerror.is(v) end

return lerror
