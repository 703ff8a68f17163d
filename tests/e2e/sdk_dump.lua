-- Lists what the real Lua API has, for test_sdk_stubs.py: every module in package.preload
-- whose name starts with "luar." (the host's table and the plugins' modules alike), each
-- module's functions (nested tables as "a.b"), and the methods of the objects the API
-- returns that can be made without a network, and each module's other fields (constants
-- such as json.null or stripe.version). Printed as one JSON line:
--   {"modules": {"luar.http": ["client", ...]}, "objects": {"luar.http.Client": [...]},
--    "constants": {"luar.json": ["null"], ...}, "errors": ["what went wrong", ...]}
-- arg[1], when given, is the base URL of a local HTTP server (a response object is made).
-- Names starting with "_" are private and left out.
local json = require "luar.json"

local function sorted(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- Functions of table `t` as "prefix.name", recursing into plain nested tables (not ones
-- already seen, and not metatables' __index, which belong to objects).
local function functions_of(t, prefix, out, seen, depth)
  if seen[t] or depth > 4 then return end
  seen[t] = true
  for k, v in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" then
      local name = prefix and (prefix .. "." .. k) or k
      if type(v) == "function" then
        out[name] = true
      elseif type(v) == "table" and getmetatable(v) == nil then
        functions_of(v, name, out, seen, depth + 1)
      end
    end
  end
end

-- Methods of an object: its own function fields and those reachable through a chain of
-- __index tables. An __index that is a function cannot be listed: reported as an error.
local function methods_of(obj, errors, what)
  local out = {}
  local function add(t)
    for k, v in pairs(t) do
      if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "function" then
        out[k] = true
      end
    end
  end
  if type(obj) == "table" then add(obj) end
  local mt, hops = getmetatable(obj), 0
  while mt ~= nil and hops < 8 do
    hops = hops + 1
    if type(mt) ~= "table" then break end
    local idx = rawget(mt, "__index")
    if type(idx) == "table" then
      add(idx)
      mt = getmetatable(idx)
    elseif type(idx) == "function" then
      errors[#errors + 1] = what .. ": __index is a function, methods cannot be listed"
      break
    else
      break
    end
  end
  return sorted(out)
end

local modules, objects, constants, errors = {}, {}, {}, {}
local loaded = {}
for name in pairs(package.preload) do
  if type(name) == "string" and name:match("^luar%.") and name ~= "luar.test" then
    local ok, m = pcall(require, name)
    if not ok then
      errors[#errors + 1] = "require " .. name .. ": " .. tostring(m)
    elseif type(m) == "table" then
      local fns = {}
      functions_of(m, nil, fns, {}, 0)
      modules[name] = sorted(fns)
      loaded[name] = m
      local consts = {}
      for k, v in pairs(m) do
        if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) ~= "function"
            and not (type(v) == "table" and getmetatable(v) == nil) then
          consts[k] = true
        end
      end
      constants[name] = sorted(consts)
    end
  end
end

-- The objects: class name (as the stubs spell it) → how to make one.
local makers = {
  ["luar.http.Client"] = function()
    return loaded["luar.http"].client { base_url = "http://127.0.0.1:9" }
  end,
  ["luar.metrics.Metric"] = function()
    return loaded["luar.metrics"].counter("sdk_dump_total", "parity test")
  end,
  ["luar.Error"] = function()
    return loaded["luar.error"].new { kind = "invalid", message = "x" }
  end,
  ["luar.github.Client"] = function()
    return loaded["luar.github"].client { token = "ghp_parity" }
  end,
  ["luar.sendgrid.Client"] = function()
    return loaded["luar.sendgrid"].client { api_key = "SG.parity" }
  end,
  ["luar.slack.Client"] = function()
    return loaded["luar.slack"].client { token = "xoxb-parity" }
  end,
  ["luar.stripe.Client"] = function()
    return loaded["luar.stripe"].client { api_key = "sk_test_parity" }
  end,
  ["luar.s3.Client"] = function()
    return loaded["luar.s3"].client { endpoint = "http://127.0.0.1:9", region = "us-east-1",
                                      access_key = "AKIDPARITY", secret_key = "parity",
                                      bucket = "b" }
  end,
  ["luar.s3.Signer"] = function()
    return loaded["luar.s3"].signer { access_key = "AKIDPARITY", secret_key = "parity" }
  end,
}
-- Stripe's resource helpers hang off a client.
for field, class in pairs {
  customers = "Customers", payment_intents = "PaymentIntents", charges = "Charges",
  subscriptions = "Subscriptions", refunds = "Refunds" } do
  makers["luar.stripe." .. class] = function()
    return makers["luar.stripe.Client"]()[field]
  end
end
if arg and arg[1] then
  makers["luar.http.ClientResponse"] = function()
    local res, err = loaded["luar.http"].get(arg[1])
    if res == nil then error(tostring(err)) end
    return res
  end
end

for class, make in pairs(makers) do
  local module = class:match("^(luar%.[%w_]+)") 
  if class == "luar.Error" then module = "luar.error" end
  if loaded[module] ~= nil then
    local ok, obj = pcall(make)
    if not ok or obj == nil then
      errors[#errors + 1] = "making " .. class .. ": " .. tostring(obj)
    else
      objects[class] = methods_of(obj, errors, class)
    end
  end
end

table.sort(errors)
print(json.encode { modules = modules, objects = objects, constants = constants,
                    errors = errors })
