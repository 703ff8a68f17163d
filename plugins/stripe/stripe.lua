-- luar.stripe: a Stripe API client on luar.http (one outbound client for the whole host:
-- its retries, breaker, rate limits and metrics apply). Loaded by the stripe plugin's
-- open() with `native`: the C helpers (encode, escape, watch) and the plugin's
-- configuration with defaults filled in. The API is documented in README.md beside this
-- file and typed in sdk/lua/luar/stripe.lua.
local native = ...

local http = require "luar.http"
local json = require "luar.json"
local crypto = require "luar.crypto"
local secrets = require "luar.secrets"

local cfg = native.config
local encode, escape = native.encode, native.escape
local lerror = require "luar.error"

local M = { version = native.version, api_version = cfg.api_version, encode = encode }

-- Statuses retried (with the same Idempotency-Key): Stripe's libraries retry 409 (a lock
-- conflict), 429 and 5xx; luar.http honours Retry-After.
local RETRY_ON = { 409, 429, 500, 502, 503, 504 }

local CLIENT_OPTIONS = {
  api_key = "string", api_version = "string", base_url = "string", timeout = "number",
  max_network_retries = "number", stripe_account = "string", headers = "table",
  retry = "any", breaker = "any", rate = "string", rate_max_wait = "number",
  ca = "string", verify = "boolean", proxy = "string",
}
local CALL_OPTIONS = {
  idempotency_key = "any", stripe_account = "string", api_version = "string",
  api_key = "string", headers = "table", timeout = "number",
}

local function check_options(where, given, known)
  if given == nil then return {} end
  if type(given) ~= "table" then error(where .. ": options must be a table", 3) end
  for k, v in pairs(given) do
    local want = known[k]
    if want == nil then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      error(string.format("%s: unknown option %q (known: %s)", where, tostring(k),
                          table.concat(names, ", ")), 3)
    end
    if want ~= "any" and type(v) ~= want then
      error(string.format("%s: option %s must be a %s, not a %s", where, k, want, type(v)), 3)
    end
  end
  return given
end

local function new_error(fields)
  return lerror.new(fields)
end

local function nonempty(v)
  if v == nil or v == json.null or v == "" then return nil end
  return v
end

-- The nil, err of an answer >= 400: Stripe's {"error": {type, code, decline_code, param,
-- message, doc_url, …}} with the Request-Id header.
local function api_error(method, path, res)
  local body = res:json()
  local e = type(body) == "table" and type(body.error) == "table" and body.error or {}
  local err = {
    kind = "http",
    status = res.status,
    type = nonempty(e.type),
    code = nonempty(e.code),
    decline_code = nonempty(e.decline_code),
    param = nonempty(e.param),
    doc_url = nonempty(e.doc_url),
    request_id = res.headers["request-id"],
    raw = type(body) == "table" and type(body.error) == "table" and body.error or nil,
  }
  local ra = tonumber(res.headers["retry-after"] or "")
  if ra then err.retry_after = ra end
  local details = {}
  for _, v in ipairs({ err.type, err.code, err.decline_code }) do details[#details + 1] = v end
  if err.request_id then details[#details + 1] = "request " .. err.request_id end
  err.message = string.format("%s %s: %s%s", method, path,
    nonempty(e.message) or ("Stripe answered " .. res.status),
    #details > 0 and (" (" .. table.concat(details, ", ") .. ")") or "")
  return nil, new_error(err)
end

local Client = {}
Client.__index = Client

-- Every call goes through here. `path` is "customers" or "/v1/customers" (a leading slash
-- means the path is used as given, for other API versions' paths such as /v2/…).
function Client:request(method, path, params, opts)
  if type(method) ~= "string" then error("stripe: request: method must be a string", 2) end
  if type(path) ~= "string" or path == "" then
    error("stripe: request: path must be a non-empty string", 2)
  end
  if params ~= nil and type(params) ~= "table" then
    error("stripe: request: params must be a table", 2)
  end
  opts = check_options("stripe: request", opts, CALL_OPTIONS)
  method = method:upper()
  if path:sub(1, 1) ~= "/" then path = "/v1/" .. path end
  local form = encode(params)
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.api_version then headers["Stripe-Version"] = opts.api_version end
  if opts.stripe_account then headers["Stripe-Account"] = opts.stripe_account end
  if opts.api_key then
    native.watch(opts.api_key)
    headers.Authorization = "Bearer " .. opts.api_key
  end
  local key = opts.idempotency_key
  if key == nil and method == "POST" then
    -- One key per logical call: luar.http's retries resend these same headers, so Stripe
    -- sees every attempt as the same request and performs it at most once.
    key = "luar-" .. crypto.uuid()
  end
  if key then headers["Idempotency-Key"] = tostring(key) end
  local req = { method = method, url = path, headers = headers, timeout = opts.timeout }
  if method == "GET" or method == "DELETE" or method == "HEAD" then
    if form ~= "" then req.url = path .. "?" .. form end
  else
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    req.body = form
  end
  local res, err = self.http:request(req)
  if not res then return nil, err end
  if res.status >= 400 then return api_error(method, path, res) end
  local obj = res:json()
  if type(obj) ~= "table" then
    return nil, new_error{
      kind = "invalid", status = res.status, request_id = res.headers["request-id"],
      message = string.format("%s %s: Stripe answered %d with a body that is not a JSON object",
                              method, path, res.status),
    }
  end
  return obj
end

local function object_path(where, resource, id)
  if type(resource) ~= "string" or resource == "" then
    error("stripe: " .. where .. ": resource must be a non-empty string", 3)
  end
  if type(id) ~= "string" or id == "" then
    error("stripe: " .. where .. ": id must be a non-empty string", 3)
  end
  return resource .. "/" .. escape(id)
end

local function collection(where, resource)
  if type(resource) ~= "string" or resource == "" then
    error("stripe: " .. where .. ": resource must be a non-empty string", 3)
  end
  return resource
end

function Client:create(resource, params, opts)
  return self:request("POST", collection("create", resource), params, opts)
end

function Client:retrieve(resource, id, params, opts)
  return self:request("GET", object_path("retrieve", resource, id), params, opts)
end

function Client:update(resource, id, params, opts)
  return self:request("POST", object_path("update", resource, id), params, opts)
end

function Client:delete(resource, id, params, opts)
  return self:request("DELETE", object_path("delete", resource, id), params, opts)
end

-- Every object of a list endpoint, page after page: `for obj, err in c:list(…)`. A failed
-- page yields false, err once and ends the loop. Pages follow has_more with starting_after,
-- or backwards with ending_before when the first page was asked with it (each page is then
-- yielded from its end), and search results' next_page.
function Client:list(resource, params, opts)
  resource = collection("list", resource)
  if params ~= nil and type(params) ~= "table" then
    error("stripe: list: params must be a table", 2)
  end
  check_options("stripe: list", opts, CALL_OPTIONS)
  local p = {}
  for k, v in pairs(params or {}) do p[k] = v end
  local backwards = p.ending_before ~= nil
  local page, i, done = nil, 0, false
  return function()
    while not done do
      if page and i < #page.data then
        -- Backwards, each page is walked from its end, so objects come away from the
        -- cursor, as the official libraries' auto-pagination does.
        i = i + 1
        return page.data[backwards and #page.data - i + 1 or i]
      end
      if page then
        if page.has_more ~= true then break end
        if nonempty(page.next_page) then
          p.page = page.next_page
        else
          local edge = backwards and page.data[1] or page.data[#page.data]
          if type(edge) ~= "table" or type(edge.id) ~= "string" then break end
          if backwards then p.ending_before = edge.id else p.starting_after = edge.id end
        end
      end
      local res, err = self:request("GET", resource, p, opts)
      if not res then
        done = true
        return false, err
      end
      if type(res.data) ~= "table" then
        done = true
        return false, new_error{ kind = "invalid",
          message = "GET /v1/" .. resource .. ": the answer is not a list object (no data)" }
      end
      page, i = res, 0
    end
    done = true
    return nil
  end
end

-- ---- thin helpers for the common resources ---------------------------------------------

local Resource = {}
Resource.__index = Resource

function Resource:create(params, opts) return self.client:create(self.path, params, opts) end
function Resource:retrieve(id, params, opts)
  return self.client:retrieve(self.path, id, params, opts)
end
function Resource:update(id, params, opts)
  return self.client:update(self.path, id, params, opts)
end
function Resource:list(params, opts) return self.client:list(self.path, params, opts) end

-- search{query = "email:'a@b.c'"}: an iterator like list (search results page by next_page).
-- Only the resources Stripe's Search API covers have it (not refunds: there is no
-- /v1/refunds/search).
local function search(self, params, opts)
  return self.client:list(self.path .. "/search", params, opts)
end

local function action(verb, name)
  return function(self, id, params, opts)
    return self.client:request("POST", object_path(name, self.path, id) .. "/" .. verb,
                               params, opts)
  end
end

local function resource(client, path, extra)
  local r = setmetatable({ client = client, path = path }, Resource)
  for name, fn in pairs(extra or {}) do r[name] = fn end
  return r
end

local function delete(self, id, params, opts)
  return self.client:delete(self.path, id, params, opts)
end

local function attach_resources(c)
  c.customers = resource(c, "customers", { delete = delete, search = search })
  c.payment_intents = resource(c, "payment_intents", {
    search = search,
    confirm = action("confirm", "payment_intents.confirm"),
    capture = action("capture", "payment_intents.capture"),
    cancel = action("cancel", "payment_intents.cancel"),
  })
  c.charges = resource(c, "charges", { search = search,
                                       capture = action("capture", "charges.capture") })
  c.subscriptions = resource(c, "subscriptions", {
    search = search,
    -- DELETE /v1/subscriptions/:id cancels (params: invoice_now, prorate, …)
    cancel = delete,
    resume = action("resume", "subscriptions.resume"),
  })
  c.refunds = resource(c, "refunds", { cancel = action("cancel", "refunds.cancel") })
end

-- ---- the client ---------------------------------------------------------------------------

function M.client(conf)
  conf = check_options("stripe.client", conf, CLIENT_OPTIONS)
  local key = conf.api_key or cfg.api_key or secrets.get(cfg.api_key_secret)
  if type(key) ~= "string" or key == "" then
    error("stripe.client: no API key: give api_key=, set plugins.stripe.api_key in the "
          .. "configuration, or store " .. cfg.api_key_secret .. " (luar secrets set "
          .. cfg.api_key_secret .. ")", 2)
  end
  native.watch(key)
  local base = (conf.base_url or cfg.base_url):gsub("/+$", "")
  if not base:match("^https?://") then
    error("stripe.client: base_url must start with https:// or http://", 2)
  end
  local version = conf.api_version or cfg.api_version
  local headers = { ["Stripe-Version"] = version, ["User-Agent"] = "luar-stripe/" .. M.version }
  if conf.stripe_account then headers["Stripe-Account"] = conf.stripe_account end
  for k, v in pairs(conf.headers or {}) do headers[k] = v end
  local retries = conf.max_network_retries or cfg.max_network_retries
  local retry = conf.retry -- false is kept: it turns luar.http's retries off
  if retry == nil then retry = { attempts = math.floor(retries) + 1, on = RETRY_ON } end
  local h = http.client{
    base_url = base,
    auth = { bearer = key },
    headers = headers,
    timeout = conf.timeout or cfg.timeout,
    retry = retry,
    breaker = conf.breaker,
    rate = conf.rate,
    rate_max_wait = conf.rate_max_wait,
    ca = conf.ca,
    verify = conf.verify,
    proxy = conf.proxy,
  }
  local c = setmetatable({ http = h, base_url = base, api_version = version }, Client)
  attach_resources(c)
  return c
end

return M
