---@meta
-- luar.log: one JSON object a line; request_id / job_id are added automatically.

---@class luar.log
local log = {}

---@param msg string
---@param fields? table<string, any> JSON-encoded as members of the line
function log.debug(msg, fields) end

---@param msg string
---@param fields? table<string, any>
function log.info(msg, fields) end

---@param msg string
---@param fields? table<string, any>
function log.warn(msg, fields) end

---@param msg string
---@param fields? table<string, any>
function log.error(msg, fields) end

return log
