-- luar.github: GitHub's REST API on top of luar.http (one outbound client: its breaker,
-- 5xx retries, timeouts and metrics apply). Embedded in github.so and run by the plugin's
-- open() with the plugin configuration's defaults as `...`.
--
-- Rate limits are handled here rather than by luar.http's generic retry because GitHub
-- says when to come back in its own headers: a primary limit (x-ratelimit-remaining: 0)
-- lasts until x-ratelimit-reset, a secondary one for Retry-After seconds (or a minute when
-- it gives none). The call waits with luar.time.sleep (the coroutine waits, the loop runs
-- on) as long as the client's max_wait allows, then fails with err.kind "rate_limited".
local defaults, native = ...
local http = require "luar.http"
local json = require "luar.json"
local time = require "luar.time"
local crypto = require "luar.crypto"

local M = { version = defaults.version }

-- The one error shape of SPEC §4 (luar.error), so tostring(err) reads like every other
-- module's.
local lerror = require "luar.error"

local fail = lerror.fail

local DEFAULT_API_VERSION = "2022-11-28"
local SECONDARY_DEFAULT_WAIT = 60 -- GitHub: "wait at least one minute" without Retry-After
local JWT_LIFETIME = 540          -- GitHub accepts at most 10 minutes
local TOKEN_MARGIN = 60           -- renew tokens this long before they expire

-- "2026-11-29T07:56:00Z" → unix seconds (days from the civil date, proleptic Gregorian).
local function iso_to_unix(s)
  local y, mo, d, h, mi, sec = (s or ""):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * ((mo + 9) % 12) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return (era * 146097 + doe - 719468) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 +
         tonumber(sec)
end

-- A GitHub App's JWT (RS256), valid from a minute ago (clock drift) for JWT_LIFETIME.
local function app_jwt(app, now)
  local input = crypto.base64url(json.encode({ alg = "RS256", typ = "JWT" })) .. "." ..
                crypto.base64url(json.encode({ iat = now - 60, exp = now + JWT_LIFETIME,
                                               iss = tostring(app.id) }))
  local sig, why = native.rs256(app.private_key, input)
  if not sig then return nil, why end
  return input .. "." .. crypto.base64url(sig)
end

local function origin(url)
  local scheme, host = url:match("^(%a[%w+.-]*)://([^/?#]+)")
  if not scheme then return nil end
  return scheme:lower() .. "://" .. host:lower()
end

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local function plain(v)
  if v == json.null then return nil end
  return v
end

local Client = {}
Client.__index = Client

---Makes a client (see README.md for the options).
function M.client(conf)
  conf = conf or {}
  if type(conf) ~= "table" then error("github.client: expected a table of options", 2) end
  local token = conf.token
  if token == nil and conf.app == nil then token = defaults.token end
  if token ~= nil and (type(token) ~= "string" or token == "") then
    error("github.client: token must be a non-empty string", 2)
  end
  local app = conf.app
  if app ~= nil then
    if token ~= nil then error("github.client: give token or app, not both", 2) end
    if type(app) ~= "table" then
      error("github.client: app must be { id = …, private_key = …, installation_id = … }", 2)
    end
    if (type(app.id) ~= "string" and math.type(app.id) ~= "integer") or app.id == "" then
      error("github.client: app.id must be the App's id or client id", 2)
    end
    if type(app.private_key) ~= "string" then
      error("github.client: app.private_key must be the App's PEM private key", 2)
    end
    local probe, why = native.rs256(app.private_key, "probe")
    if not probe then error("github.client: app.private_key: " .. why, 2) end
    local inst = app.installation_id
    if inst ~= nil and math.type(inst) ~= "integer" and
       not (type(inst) == "string" and inst:match("^%d+$")) then
      error("github.client: app.installation_id must be an integer", 2)
    end
    app = { id = app.id, private_key = app.private_key, installation_id = inst }
  end
  local base = conf.base_url or defaults.base_url or "https://api.github.com"
  if type(base) ~= "string" or not origin(base) then
    error("github.client: base_url must be an absolute http(s) URL", 2)
  end
  local max_wait = conf.max_wait or tonumber(defaults.max_wait) or 60
  if type(max_wait) ~= "number" or max_wait < 0 then
    error("github.client: max_wait must be a number of seconds >= 0", 2)
  end
  local retries = conf.rate_limit_retries or 3
  if math.type(retries) ~= "integer" or retries < 0 then
    error("github.client: rate_limit_retries must be an integer >= 0", 2)
  end
  local opts = {
    base_url = base,
    headers = {
      ["Accept"] = "application/vnd.github+json",
      ["X-GitHub-Api-Version"] = conf.api_version or defaults.api_version or DEFAULT_API_VERSION,
      ["User-Agent"] = conf.user_agent or defaults.user_agent or ("luar-github/" .. M.version),
    },
  }
  -- 5xx of idempotent calls are luar.http's to retry; 403/429 are ours (above). `false`
  -- is kept as given: it turns luar.http's retries off.
  if conf.retry == nil then
    opts.retry = { on = { 500, 502, 503, 504 } }
  else
    opts.retry = conf.retry
  end
  if token then opts.auth = { bearer = token } end
  for _, k in ipairs({ "timeout", "breaker", "rate", "rate_max_wait", "cache", "ca", "proxy" }) do
    opts[k] = conf[k]
  end
  return setmetatable({
    http = http.client(opts),
    app = app,
    origin = origin(base),
    max_wait = max_wait,
    rate_limit_retries = retries,
    reset_at = nil, -- the window was spent by the last answer: wait until then
  }, Client)
end

local function describe(o)
  return o.method .. " " .. (o.url:match("^%a[%w+.-]*://[^/]+(.*)$") or ("/" .. o.url:gsub("^/+", "")))
end

-- nil, err for a 4xx/5xx: GitHub's {"message", "documentation_url", "errors"} on err.
local function api_error(res, o)
  local data = json.decode(res.body or "")
  local msg = type(data) == "table" and plain(data.message) or nil
  local fields = { status = res.status, request_id = res.headers["x-github-request-id"] }
  if type(data) == "table" then
    fields.documentation_url = plain(data.documentation_url)
    if type(data.errors) == "table" then fields.errors = data.errors end
  end
  local text = msg and tostring(msg) or (res.body or ""):sub(1, 200)
  if fields.errors and fields.errors[1] and type(fields.errors[1]) == "table" then
    local e = fields.errors[1]
    local detail = plain(e.message) or plain(e.code)
    if detail then
      text = text .. " (" .. tostring(plain(e.field) or plain(e.resource) or "") ..
             (plain(e.field) and ": " or "") .. tostring(detail) .. ")"
    end
  end
  return fail("http", ("github: %s answered %d: %s"):format(describe(o), res.status, text), fields)
end

-- Seconds to wait before retrying a rate-limited answer, or nil when it is not one.
local function rate_limit_wait(res)
  if res.status ~= 403 and res.status ~= 429 then return nil end
  local h = res.headers
  local retry_after = tonumber(h["retry-after"] or "")
  if retry_after then return math.max(retry_after, 0), "secondary" end
  local remaining, reset = tonumber(h["x-ratelimit-remaining"] or ""), tonumber(h["x-ratelimit-reset"] or "")
  if remaining == 0 and reset then return math.max(reset - time.now(), 0), "primary" end
  if (res.body or ""):lower():find("secondary rate limit", 1, true) then
    return SECONDARY_DEFAULT_WAIT, "secondary"
  end
  return nil
end

local function decode(res)
  if res.body == nil or res.body == "" then return true end
  local ct = res.headers["content-type"] or ""
  if ct:find("json", 1, true) then
    local data = json.decode(res.body)
    if data ~= nil then return data end
  end
  return res.body
end

-- Sends `o` through the rate-limit loop: the decoded body and the response, or nil, err.
local function perform(self, o)
  local waited, retries = 0, 0
  while true do
    if self.reset_at then
      local wait = self.reset_at - time.now()
      if wait > 0 then
        if waited + wait > self.max_wait then
          return fail("rate_limited", ("github: %s: the rate limit window is spent; it resets in "
                      .. "%.0f s, more than max_wait (%g s)"):format(describe(o), wait,
                      self.max_wait), { retry_after = wait })
        end
        time.sleep(wait)
        waited = waited + wait
      end
      self.reset_at = nil
    end
    local res, err = self.http:request(o)
    if not res then return nil, err end
    local wait, which = rate_limit_wait(res)
    if wait == nil then
      if res.status >= 400 then return api_error(res, o) end
      local h = res.headers
      if tonumber(h["x-ratelimit-remaining"] or "") == 0 then
        self.reset_at = tonumber(h["x-ratelimit-reset"] or "")
      end
      return decode(res), res
    end
    retries = retries + 1
    if retries > self.rate_limit_retries or waited + wait > self.max_wait then
      return fail("rate_limited", ("github: %s: %s rate limit; retry in %.0f s (waited %.0f s, "
                  .. "max_wait %g s)"):format(describe(o), which, wait, waited, self.max_wait),
                  { status = res.status, retry_after = wait,
                    request_id = res.headers["x-github-request-id"] })
    end
    time.sleep(wait)
    waited = waited + wait
  end
end

-- The Authorization value of a GitHub App client: the App's JWT, or the installation's
-- token (minted with the JWT, kept until a minute before it expires). nil, err on failure.
local function app_authorization(self)
  local app, now = self.app, math.floor(time.now())
  if app.token and app.token_expires - TOKEN_MARGIN > now then return "Bearer " .. app.token end
  if not app.jwt or app.jwt_expires - TOKEN_MARGIN <= now then
    local jwt, why = app_jwt(app, now)
    if not jwt then return fail("invalid", "github: app JWT: " .. why) end
    app.jwt, app.jwt_expires = jwt, now + JWT_LIFETIME
  end
  if app.installation_id == nil then return "Bearer " .. app.jwt end
  local o = { method = "POST", url = "app/installations/" .. app.installation_id ..
              "/access_tokens", headers = { Authorization = "Bearer " .. app.jwt } }
  local data, res = perform(self, o)
  if not data then return nil, res end
  if type(data) ~= "table" or type(data.token) ~= "string" then
    return fail("invalid", "github: " .. describe(o) .. " answered without a token")
  end
  app.token, app.token_expires = data.token, iso_to_unix(data.expires_at) or (now + 3000)
  return "Bearer " .. app.token
end

---Any call ⏸: method, path (relative to base_url, or an absolute URL on the same origin)
---and opts {query, json, body, headers, timeout}. Returns the decoded body (true when
---empty) and the response, or nil, err.
function Client:request(method, path, opts)
  if type(method) ~= "string" or type(path) ~= "string" then
    error("github: request(method, path[, opts])", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("github: opts must be a table", 2) end
  opts = opts or {}
  local o = { method = method:upper(), url = path, query = opts.query, json = opts.json,
              body = opts.body, headers = opts.headers, timeout = opts.timeout }
  local absolute = origin(path)
  if absolute and absolute ~= self.origin then
    -- The token must not leave for another host (a Link header or a caller's URL).
    return fail("invalid", ("github: %s is not on %s"):format(absolute, self.origin))
  end
  if not self.app then return perform(self, o) end
  for attempt = 1, 2 do
    local auth, err = app_authorization(self)
    if not auth then return nil, err end
    local h = {}
    for k, v in pairs(opts.headers or {}) do h[k] = v end
    h.Authorization = auth
    o.headers = h
    local data, res = perform(self, o)
    -- A revoked installation token: mint a new one once.
    if data or attempt == 2 or res.status ~= 401 or not self.app.token then
      return data, res
    end
    self.app.token = nil
  end
end

---GET ⏸ with `query` (a table) as the query string.
function Client:get(path, query, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.query = query
  return self:request("GET", path, o)
end

for _, m in ipairs({ "post", "put", "patch", "delete" }) do
  local method = m:upper()
  ---@diagnostic disable-next-line: assign-type-mismatch
  Client[m] = function(self, path, body, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.json = body
    return self:request(method, path, o)
  end
end

-- The next page's URL from a Link header: <url>; rel="next".
local function next_link(link)
  if type(link) ~= "string" then return nil end
  for url, params in link:gmatch("<([^>]*)>([^<]*)") do
    for rel in params:gmatch('rel%s*=%s*"?([^";,]+)"?') do
      for word in rel:gmatch("%S+") do
        if word == "next" then return url end
      end
    end
  end
  return nil
end

-- The items of one page: the array itself, or the one array of an object page
-- ({"total_count": …, "items": […]}, {"workflow_runs": […]}).
local function items_of(data)
  if type(data) ~= "table" then return nil end
  if is_list(data) then return data end
  if type(data.items) == "table" then return data.items end
  local found
  for _, v in pairs(data) do
    if type(v) == "table" and is_list(v) then
      if found then return nil end
      found = v
    end
  end
  return found
end

---Iterates over every item of a paginated list ⏸, following Link rel="next":
---`for item, err in gh:paginate(path, query) do`. A failure yields false, err once and
---ends the loop.
function Client:paginate(path, query, opts)
  if type(path) ~= "string" then error("github: paginate(path[, query[, opts]])", 2) end
  if query ~= nil and type(query) ~= "table" then error("github: query must be a table", 2) end
  local next_url, first, items, i, done = path, true, nil, 0, false
  return function()
    while true do
      if items and i < #items then
        i = i + 1
        return items[i]
      end
      if done or next_url == nil then return nil end
      local o = {}
      for k, v in pairs(opts or {}) do o[k] = v end
      o.query = first and query or nil -- the next links carry the query already
      first = false
      local data, res = self:request("GET", next_url, o)
      if not data then
        done = true
        return false, res
      end
      items, i = items_of(data), 0
      if items == nil then
        done = true
        return false, select(2, fail("invalid", ("github: GET %s: the page holds no list")
                                     :format(next_url)))
      end
      next_url = next_link(res.headers.link)
    end
  end
end

return M
