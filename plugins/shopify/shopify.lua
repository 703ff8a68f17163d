-- luar.shopify: checks the signed query strings Shopify sends to an app's own endpoints:
-- the OAuth install/callback redirects (`hmac=`) and app-proxy requests (`signature=`).
-- Webhooks are verified by the `shopify` webhook scheme (C, same plugin). Embedded in
-- shopify.so.
local crypto = require "luar.crypto"
local time = require "luar.time"

local shopify = {}

-- The one error shape of SPEC §4 (luar.error), so tostring(err) reads like every other
-- module's.
local lerror = require "luar.error"

local fail = lerror.fail

local function unescape(s)
  local bad = false
  s = s:gsub("%+", " "):gsub("%%(%x?%x?)", function(h)
    if #h ~= 2 then
      bad = true
      return ""
    end
    return string.char(tonumber(h, 16))
  end)
  if bad then
    return nil
  end
  return s
end

-- The fields of a raw query string, decoded, in order: { {key, value, index}, … }.
local function parse(query)
  local fields = {}
  for field in query:gmatch("[^&]+") do
    local k, v = field:match("^([^=]*)=?(.*)$")
    k, v = unescape(k), unescape(v)
    if k == nil or v == nil then
      return nil
    end
    fields[#fields + 1] = { k, v, #fields + 1 }
  end
  return fields
end

-- Sorted by key, fields of one key in the order given.
local function sort_fields(fields)
  table.sort(fields, function(a, b)
    if a[1] ~= b[1] then
      return a[1] < b[1]
    end
    return a[3] < b[3]
  end)
  return fields
end

-- application/x-www-form-urlencoded, as URLSearchParams writes it (Shopify's libraries
-- re-encode the decoded fields this way before signing).
local function form_escape(s)
  return (s:gsub("[^%w%*%-%._ ]", function(c)
    return ("%%%02X"):format(c:byte())
  end):gsub(" ", "+"))
end

local function secrets_list(secrets, where)
  if type(secrets) == "string" then
    secrets = { secrets }
  end
  if type(secrets) ~= "table" or #secrets == 0 then
    error(where .. ": secret must be a string or a list of strings (the app's client secret)", 3)
  end
  for i, s in ipairs(secrets) do
    if type(s) ~= "string" or s == "" then
      error(("%s: secret %d must be a non-empty string"):format(where, i), 3)
    end
  end
  return secrets
end

-- Compares the hex HMAC-SHA256 of `message` under each secret with `given`; then checks
-- the `timestamp` field against opts.tolerance when one is given.
local function check(what, given, message, secrets, fields, opts)
  local ok = false
  given = given:lower()
  for _, secret in ipairs(secrets) do
    -- every secret is tried, so the time taken does not say which one matched
    if crypto.equals(crypto.hmac("sha256", secret, message, "hex"), given) then
      ok = true
    end
  end
  if not ok then
    return fail("invalid_signature", ("the %s parameter does not match (%d secret%s)"):format(
      what, #secrets, #secrets == 1 and "" or "s"))
  end
  if opts.tolerance ~= nil then
    local ts
    for _, f in ipairs(fields) do
      if f[1] == "timestamp" then
        ts = tonumber(f[2])
      end
    end
    if ts == nil then
      return fail("invalid_signature", "no timestamp parameter to check the tolerance against")
    end
    local now = opts.now or time.now()
    if math.abs(now - ts) > opts.tolerance then
      return fail("expired", ("timestamp %d is %d s in the %s (tolerance %g s)"):format(
        ts, math.floor(math.abs(now - ts)), ts < now and "past" or "future", opts.tolerance))
    end
  end
  return true
end

local function check_args(query, opts, where)
  if type(query) ~= "string" then
    error(where .. ": query must be the raw query string (req.query_string)", 3)
  end
  opts = opts or {}
  if type(opts) ~= "table" then
    error(where .. ": opts must be a table", 3)
  end
  if opts.tolerance ~= nil and (type(opts.tolerance) ~= "number" or opts.tolerance <= 0) then
    error(where .. ": tolerance must be a number of seconds > 0", 3)
  end
  return opts
end

-- The part the two checks share: the arguments, the fields, the parameter `what` holding
-- the signature, and the text `build` makes of the other fields (sorted by name, without
-- those in `skip`), which check() compares. Called in tail position, so the errors raised
-- (level 3) name the caller of shopify.verify_*.
local function verify_query(where, what, skip, build, query, secret, opts)
  opts = check_args(query, opts, where)
  local secrets = secrets_list(secret, where)
  local fields = parse(query)
  if fields == nil then
    return fail("invalid_signature", "the query is not percent-encoded correctly")
  end
  local given, others = nil, {}
  for _, f in ipairs(sort_fields(fields)) do
    if f[1] == what then
      given = f[2]
    elseif not skip[f[1]] then
      others[#others + 1] = f
    end
  end
  if given == nil or given == "" then
    return fail("invalid_signature", "no " .. what .. " parameter")
  end
  return check(what, given, build(others), secrets, fields, opts)
end

-- Verifies the `hmac` parameter of an OAuth install or callback redirect: the other
-- fields (without `hmac` and `signature`), sorted, re-encoded and joined with "&", signed
-- with HMAC-SHA256 (hex). Returns true, or nil, err (kind "invalid_signature" or
-- "expired" with opts.tolerance).
function shopify.verify_oauth(query, secret, opts)
  return verify_query("shopify.verify_oauth", "hmac", { signature = true }, function(fields)
    local parts = {}
    for i, f in ipairs(fields) do
      parts[i] = form_escape(f[1]) .. "=" .. form_escape(f[2])
    end
    return table.concat(parts, "&")
  end, query, secret, opts)
end

-- Verifies the `signature` parameter of an app-proxy request: the other fields, decoded,
-- the values of a repeated key joined with ",", written "key=value", sorted and
-- concatenated with no separator, signed with HMAC-SHA256 (hex). Returns true, or nil, err
-- as verify_oauth.
function shopify.verify_proxy(query, secret, opts)
  return verify_query("shopify.verify_proxy", "signature", {}, function(fields)
    local parts = {}
    for _, f in ipairs(fields) do
      local last = parts[#parts]
      if last and last.key == f[1] then
        last.values[#last.values + 1] = f[2]
      else
        parts[#parts + 1] = { key = f[1], values = { f[2] } }
      end
    end
    for i, part in ipairs(parts) do
      parts[i] = part.key .. "=" .. table.concat(part.values, ",")
    end
    return table.concat(parts)
  end, query, secret, opts)
end

return shopify
