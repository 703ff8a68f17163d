-- luar.test: the doubles of `luar test` (docs/testing.md). The glue over the C core in
-- host/lua/mod_test.c and test_stubs.c, which hold everything that touches the host: the
-- clock's offset, the runner's drain, the scheduler's ticks, the client's stubs, the log
-- capture, signing and the listener.
local core = ...
local json = require "luar.json"
local http = require "luar.http"
local time = require "luar.time"

local M = { clock = {}, jobs = {}, http = {} }

local function check(cond, level, fmt, ...)
  if not cond then error("luar.test: " .. string.format(fmt, ...), level + 1) end
end

-- A request or response as the specs see it: json() decodes the body (r.json() or r:json()).
local function with_json(r)
  r.json = function(self)
    local body = (type(self) == "table" and self or r).body
    return json.decode(body)
  end
  return r
end

---- t.clock ---------------------------------------------------------------------------

function M.clock.now()
  return time.now()
end

function M.clock.advance(seconds)
  check(type(seconds) == "number" and seconds >= 0, 2,
    "t.clock.advance expects seconds >= 0, got %s", tostring(seconds))
  core.move(core.offset() + seconds, true)
  return time.now()
end

function M.clock.set(unix)
  check(type(unix) == "number", 2, "t.clock.set expects unix seconds, got %s", tostring(unix))
  -- A jump, not a journey: no tick of the time skipped is enqueued (advance is the move
  -- that fires them), so a spec can start at "02:59 on the 1st" without days of ticks.
  local real = time.now() - core.offset()
  core.move(unix - real, false)
  return time.now()
end

---- t.jobs ----------------------------------------------------------------------------

function M.jobs.drain(opts)
  check(opts == nil or type(opts) == "table", 2, "t.jobs.drain expects {max = n} or nothing")
  return core.drain(opts and opts.max or 1000)
end

local function by_id(list)
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

function M.jobs.enqueued(name)
  check(name == nil or type(name) == "string", 2, "t.jobs.enqueued expects a job name")
  return by_id(core.jobs("waiting", name))
end

function M.jobs.dead(name)
  check(name == nil or type(name) == "string", 2, "t.jobs.dead expects a job name")
  return by_id(core.jobs("dead", name))
end

---- t.http ----------------------------------------------------------------------------

local function normalize(r, where)
  check(type(r) == "table", 4, "%s: a response is a table {status, json | body, headers}", where)
  local headers = {}
  for k, v in pairs(r.headers or {}) do headers[string.lower(k)] = tostring(v) end
  local body = r.body
  if r.json ~= nil then
    body = json.encode(r.json)
    headers["content-type"] = headers["content-type"] or "application/json"
  end
  check(body == nil or type(body) == "string", 4, "%s: body must be a string", where)
  return r.status or 200, body or "", headers
end

function M.http.stub(method, pattern, response, opts)
  check(type(method) == "string", 2, "t.http.stub: method must be a string (\"*\" for any)")
  check(type(pattern) == "string", 2, "t.http.stub: url_pattern must be a string")
  check(type(response) == "table" or type(response) == "function", 2,
    "t.http.stub: response must be a table, a list of tables or a function")
  check(opts == nil or type(opts) == "table", 2, "t.http.stub: opts must be a table")
  local times = opts and opts.times
  check(times == nil or (math.type(times) == "integer" and times > 0), 2,
    "t.http.stub: times must be a positive integer")
  local where = "t.http.stub(" .. method .. " " .. pattern .. ")"
  local stub = { method = method:upper(), pattern = pattern, calls = 0 }
  local responder
  if type(response) == "function" then
    responder = function(m, u, h, b)
      stub.calls = stub.calls + 1
      return normalize(response(with_json({ method = m, url = u, headers = h, body = b })), where)
    end
  elseif response[1] ~= nil then
    for i = 1, #response do normalize(response[i], where) end -- misuse raises here
    responder = function()
      stub.calls = stub.calls + 1
      return normalize(response[math.min(stub.calls, #response)], where)
    end
  else
    normalize(response, where)
    responder = function()
      stub.calls = stub.calls + 1
      return normalize(response, where)
    end
  end
  core.stub(stub.method, pattern, times, responder)
  return stub
end

function M.http.requests(pattern)
  check(pattern == nil or type(pattern) == "string", 2, "t.http.requests expects a url pattern")
  local out = {}
  for _, r in ipairs(core.requests()) do
    if pattern == nil or core.glob(pattern, r.url) then out[#out + 1] = with_json(r) end
  end
  return out
end

function M.http.passthrough(pattern)
  check(type(pattern) == "string", 2, "t.http.passthrough expects a url pattern")
  core.passthrough(pattern)
end

---- t.webhook and t.request --------------------------------------------------------------

local function send(method, path, headers, body)
  local res, err = http.request({
    method = method, url = core.base() .. path, headers = headers, body = body,
    retry = false, breaker = false,
  })
  if not res then error("luar.test: " .. method .. " " .. path .. " failed: " ..
    tostring(err and err.message or err), 3) end
  return with_json({ status = res.status, headers = res.headers, body = res.body })
end

local sent = 0

function M.webhook(route, scheme, event, opts)
  check(type(route) == "string" and route:sub(1, 1) == "/", 2,
    "t.webhook: route must be a path such as \"/hooks/stripe\"")
  check(type(scheme) == "string", 2, "t.webhook: scheme must be a string (\"stripe\", …)")
  check(type(event) == "table" or type(event) == "string", 2,
    "t.webhook: event must be a table (sent as JSON) or a string body")
  opts = opts or {}
  check(type(opts) == "table", 2, "t.webhook: opts must be a table")
  local body = type(event) == "string" and event or json.encode(event)
  sent = sent + 1
  local id = opts.id or string.format("msg_test_%d_%d", math.floor(time.now()), sent)
  local signed = opts.tamper and body .. " tampered" or body
  local lines = core.sign(route, scheme, signed, opts.secret, tostring(id), opts.timestamp)
  local headers = { ["content-type"] = "application/json" }
  for _, line in ipairs(lines) do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then headers[name:lower()] = value end
  end
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  return send("POST", route, headers, body)
end

local function query_string(q)
  if type(q) == "string" then return q end
  local keys, parts = {}, {}
  for k in pairs(q) do keys[#keys + 1] = k end
  table.sort(keys)
  local function esc(s)
    return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
  end
  for _, k in ipairs(keys) do parts[#parts + 1] = esc(k) .. "=" .. esc(q[k]) end
  return table.concat(parts, "&")
end

function M.request(method, path, opts)
  check(type(method) == "string", 2, "t.request: method must be a string")
  check(type(path) == "string" and path:sub(1, 1) == "/", 2, "t.request: path must start with /")
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  local body = opts.body
  if opts.json ~= nil then
    body = json.encode(opts.json)
    headers["content-type"] = headers["content-type"] or "application/json"
  end
  if opts.query ~= nil then path = path .. "?" .. query_string(opts.query) end
  return send(method:upper(), path, headers, body)
end

---- t.logs ----------------------------------------------------------------------------

function M.logs(match)
  check(match == nil or type(match) == "string" or type(match) == "table", 2,
    "t.logs expects a substring of msg or a table of fields")
  local out = {}
  for line in core.logs():gmatch("[^\n]+") do
    local rec = json.decode(line)
    if type(rec) == "table" then
      local keep = true
      if type(match) == "string" then
        keep = type(rec.msg) == "string" and rec.msg:find(match, 1, true) ~= nil
      elseif type(match) == "table" then
        for k, v in pairs(match) do
          if rec[k] ~= v then keep = false break end
        end
      end
      if keep then out[#out + 1] = rec end
    end
  end
  return out
end

---- the runner's side (host/lua/vm.c) ----------------------------------------------------

-- Every test starts from nothing (a before_each of the root block, so it runs before the
-- specs' own), and ends failed when an outbound request matched no stub, even when the
-- code under test caught that error. Reached through the metatable: not part of the API
-- the specs see (pairs does not list it).
local function attach(busted)
  local registered = false
  busted.subscribe({ "suite", "start" }, function()
    -- The root block is the current context here: its before_each runs first of all.
    if not registered then
      busted.publish({ "register", "before_each" }, "luar.test reset", function() core.reset() end)
      registered = true
    end
    return nil, true
  end)
  busted.subscribe({ "test", "start" }, function(element)
    if not element.luar_test_wrapped then
      local run = element.run
      element.run = function(...)
        run(...)
        local unmatched = core.unmatched()
        if unmatched then
          local where = element.trace and element.trace.short_src and
            (element.trace.short_src .. ":" .. tostring(element.trace.currentline) .. ": ") or ""
          error(where .. unmatched .. "(the request failed in the code under test; add a " ..
            "t.http.stub for it, or t.http.passthrough)", 0)
        end
      end
      element.luar_test_wrapped = true
    end
    return nil, true
  end)
end

return setmetatable(M, { __index = { _attach = attach } })
