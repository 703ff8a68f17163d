---@meta
-- luar.cache: a key-value cache with a time to live per entry. In process (an LRU bounded
-- by cache.max_bytes, one per worker) on the SQLite backend; on the server, shared by every
-- process and instance, on Redis. Nothing in it is durable. See docs/lua-api.md#luarcache.
--
-- Keys: strings (or numbers) of 1 to 512 bytes without NUL. ttl: seconds > 0, fractions
-- allowed; nil for no expiry. Values keep their Lua type: strings, integers, floats,
-- booleans, tables (stored as JSON: string or number keys, 14 significant digits for
-- numbers inside, no cycles or functions) and json.null. Misuse raises; failures give
-- nil, err with err.kind "too_large" (over cache.max_value), "invalid" or "backend".

---@class luar.cache
local cache = {}

---@alias luar.CacheValue string|number|boolean|table|lightuserdata

---The value stored under `key`, ⏸; nil when absent or expired.
---@param key string|number
---@return luar.CacheValue|nil value
---@return luar.Error? err
function cache.get(key) end

---Stores `value` under `key` for `ttl` seconds (nil: until deleted or evicted), ⏸,
---replacing the value and its expiry. A nil value deletes the key.
---@param key string|number
---@param value luar.CacheValue|nil
---@param ttl? number seconds
---@return true|nil ok
---@return luar.Error? err kind "too_large", "invalid" (a table JSON cannot hold) or "backend"
function cache.set(key, value, ttl) end

---Removes `key`, ⏸ (absent is not an error).
---@param key string|number
---@return true|nil ok
---@return luar.Error? err
function cache.delete(key) end

---Adds `n` (default 1, may be negative) to the integer under `key` and returns the sum, ⏸.
---An absent key starts at 0 and expires after `ttl`; an existing one keeps its expiry. A
---value that is not an integer, or a sum past 64 bits, gives nil, err (kind "invalid").
---@param key string|number
---@param n? integer
---@param ttl? number seconds, applied when the key is created
---@return integer|nil value
---@return luar.Error? err
function cache.incr(key, n, ttl) end

---The value under `key`; else calls `fn()` (which may wait), stores its result for `ttl`
---seconds (nil: no expiry) and returns it, ⏸. Concurrent calls for one key in a process
---run `fn` once and all get its result; if `fn` raises, each of them raises that error
---and nothing is stored. A nil result is returned and not stored.
---@generic T
---@param key string|number
---@param ttl number|nil seconds
---@param fn fun(): T
---@return T|nil value
---@return luar.Error? err
function cache.remember(key, ttl, fn) end

return cache
