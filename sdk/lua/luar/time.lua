---@meta
-- luar.time: clocks and sleep.

---@class luar.time
local time = {}

---Unix time in seconds, with sub-second precision.
---@return number
function time.now() end

---Seconds from an arbitrary origin; never goes back.
---@return number
function time.monotonic() end

---⏸ Yields the running coroutine for `seconds` (0 to one year).
---@param seconds number
function time.sleep(seconds) end

return time
