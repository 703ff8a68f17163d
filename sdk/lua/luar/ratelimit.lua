---@meta
-- luar.ratelimit: GCRA rate limits kept in the queue backend, so a limit is exact across
-- every worker process and instance sharing it. See docs/security.md.

---@class luar.ratelimit
local ratelimit = {}

---@class luar.RateCheckOptions
---@field cost? integer units this call takes (default 1; at most the limit's burst N)
---@field name? string label of luar_ratelimit_rejected_total when refused (default "check")

---Checks and takes one call (or `cost` units) of `key` under `limit`, ⏸. A limit "N/period"
---(period s, m, h or d) allows a burst of N and refills continuously at N per period.
---The same key under another limit is a separate state. A malformed limit, cost or name
---raises; a backend that cannot answer gives nil, err (kind "backend").
---@param key string|number
---@param limit string "N/s", "N/m", "N/h" or "N/d"
---@param opts? luar.RateCheckOptions
---@return boolean|nil allowed nil when the backend failed
---@return number|luar.Error retry_after seconds until the same call would be allowed (0 when allowed), or the error
---@return integer? remaining calls of cost 1 still allowed right now
function ratelimit.check(key, limit, opts) end

return ratelimit
