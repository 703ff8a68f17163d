-- Small helpers the modules share.
local json = require "luar.json"

local M = {}

-- `v`, or nil for a JSON null: `"customer": null` decodes to json.null, which is truthy
-- in Lua, so `if pi.customer then` alone would take a null for a customer.
function M.nonnull(v)
  if v == json.null then return nil end
  return v
end

return M
