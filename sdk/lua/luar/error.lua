---@meta
-- The error shape every luar module returns as the second value of `nil, err`.

---@class luar.Error
---@field kind string "timeout", "connect", "tls", "http", "invalid", "backend", ...
---@field message string
---@field status? integer HTTP status, when relevant
---@field retry_after? number seconds, when relevant
