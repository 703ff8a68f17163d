---@meta
-- luar.http, server side. Routes are declared while the scripts load.

---@class luar.http
local http = {}

---@class luar.http.Request
---@field method string "GET", "POST", ...
---@field path string percent-decoded path, without the query
---@field query table<string, string> decoded query; a repeated key keeps its last value
---@field query_string string the raw query string ("" when none)
---@field headers table<string, string> lower-case names; repeated headers joined with ", "
---@field params table<string, string> `:name` segments and the `*name` splat of the route
---@field body string the whole request body ("" when none)
---@field id string the request id (X-Request-Id when valid, else generated)
---@field remote_addr string the peer's IP address
---@field route string the matched route pattern
---@field tls? { client_subject?: string } present when the request came over TLS
local Request = {}

---Decodes the body as JSON.
---@return any|nil value
---@return luar.Error|nil err kind "invalid" when the body is not valid JSON
function Request:json() end

---@class luar.http.Response
---@field status? integer default 200
---@field json? any encoded as the body, Content-Type application/json
---@field body? string the body as is (Content-Type text/plain; charset=utf-8 unless set)
---@field headers? table<string, string|number>

---Declares a route. `pattern` segments: literals, `:name` (one non-empty segment), and a
---trailing `*name` (the rest of the path). Literal segments beat `:params`, which beat a
---splat. `method` is an HTTP method or "*" for any. The handler returns a Response table, a
---string (200 text/plain) or nil (204).
---@param method string
---@param pattern string
---@param handler fun(req: luar.http.Request): luar.http.Response|string|nil
---@param opts? table reserved for route options (rate limits, ...)
function http.route(method, pattern, handler, opts) end

return http
