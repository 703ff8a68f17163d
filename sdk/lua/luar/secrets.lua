---@meta
-- luar.secrets: values from the encrypted secret store (`luar secrets set NAME`), then from
-- the environment. See docs/secrets.md.

---@class luar.secrets
local secrets = {}

---The value of `name`: from the encrypted store when it has it, else the environment
---variable `name`, else nil. The store is read at start and on every reload. The value is
---redacted ("[REDACTED]") from log lines, metric labels, error bodies and stored job errors
---from then on (values shorter than 6 bytes cannot be, and are reported once).
---@param name string raises when not a string
---@return string|nil
function secrets.get(name) end

return secrets
