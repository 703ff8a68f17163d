---@meta
-- luar.json: JSON with exact 64-bit integers both ways, nesting limited to 128 levels.

---@class luar.json
---@field null lightuserdata the value JSON null decodes to (and encodes from)
local json = {}

---Encodes a value. Raises on values JSON cannot hold (functions, cycles, NaN, too deep).
---@param value any
---@return string
function json.encode(value) end

---Decodes JSON text. Never raises on bad input.
---@param text string
---@return any|nil value
---@return luar.Error|nil err kind "invalid"
function json.decode(text) end

return json
