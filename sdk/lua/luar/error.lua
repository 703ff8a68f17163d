---@meta
-- The error shape every luar module returns as the second value of `nil, err`.

---@class luar.Error
---@field kind string "timeout", "connect", "tls", "http", "invalid", "backend", ...
---@field message string
---@field status? integer HTTP status, when relevant
---@field retry_after? number seconds, when relevant

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
