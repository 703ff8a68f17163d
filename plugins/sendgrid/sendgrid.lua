-- luar.sendgrid: SendGrid's v3 Mail Send API on top of luar.http (one outbound client:
-- its retries, breaker, rate limit and metrics apply). Embedded in sendgrid.so and run by
-- the plugin's open() with the plugin configuration's defaults as `...`.
--
-- A message is checked against SendGrid's documented rules before anything is sent, so a
-- mistake comes back as nil, err{kind = "invalid", field = …} naming the field, not as a
-- 400 from the API.
local defaults = ...
local http = require "luar.http"
local json = require "luar.json"
local crypto = require "luar.crypto"
local time = require "luar.time"

local M = { version = defaults.version }

-- The one error shape of SPEC §4 (luar.error), so tostring(err) reads like every other
-- module's.
local lerror = require "luar.error"

local fail = lerror.fail

-- Validation failures unwind build() as this table; send() turns it into nil, err.
local Invalid = {}
local function bad(field, fmt, ...)
  error(setmetatable({ field = field, message = field .. " " .. fmt:format(...) }, Invalid), 0)
end

local MAX_RECIPIENTS = 1000       -- per request, across personalizations
local MAX_CATEGORIES = 10
local MAX_CUSTOM_ARGS_BYTES = 10000
local MAX_SEND_AHEAD = 72 * 3600  -- send_at at most 72 h ahead
local MAX_GROUPS_TO_DISPLAY = 25

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local function check_string(v, field, required)
  if v == nil then
    if required then bad(field, "is required") end
    return nil
  end
  if type(v) ~= "string" or v == "" then bad(field, "must be a non-empty string") end
  return v
end

local function address(v, field)
  local email, name
  if type(v) == "string" then
    email = v
  elseif type(v) == "table" then
    email, name = v.email, v.name
  else
    bad(field, "must be an email address or {email = …, name = …}")
  end
  if type(email) ~= "string" or not email:find("^[^@%s<>]+@[^@%s<>]+%.[^@%s<>]+$") then
    bad(field, "%q is not an email address", tostring(email))
  end
  if name ~= nil and type(name) ~= "string" then bad(field .. ".name", "must be a string") end
  return { email = email, name = name }
end

-- One address or a list of them; nil stays nil unless required.
local function addresses(v, field, required)
  if v == nil then
    if required then bad(field, "is required (at least one recipient)") end
    return nil
  end
  if type(v) == "string" or (type(v) == "table" and v.email ~= nil) then v = { v } end
  if not is_list(v) then bad(field, "must be an address or a list of addresses") end
  if #v == 0 then
    if required then bad(field, "is required (at least one recipient)") end
    return nil
  end
  local out = {}
  for i, a in ipairs(v) do out[i] = address(a, ("%s[%d]"):format(field, i)) end
  return out
end

-- A table of string values (custom_args, substitutions, headers): numbers become strings.
local function string_map(v, field)
  if v == nil then return nil end
  if type(v) ~= "table" then bad(field, "must be a table of strings") end
  local out, any = {}, false
  for k, x in pairs(v) do
    if type(k) ~= "string" then bad(field, "keys must be strings") end
    if type(x) == "number" or type(x) == "boolean" then x = tostring(x) end
    if type(x) ~= "string" then bad(field .. "." .. k, "must be a string") end
    out[k], any = x, true
  end
  return any and out or nil
end

local function unix_time(v, field)
  if v == nil then return nil end
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    bad(field, "must be an integer unix time")
  end
  if v > time.now() + MAX_SEND_AHEAD then bad(field, "is more than 72 hours ahead") end
  return math.tointeger(v)
end

local function personalization(p, i, m, seen_total)
  local field = ("personalizations[%d]"):format(i)
  if type(p) ~= "table" then bad(field, "must be a table") end
  local q = {
    to = addresses(p.to, field .. ".to", true),
    cc = addresses(p.cc, field .. ".cc"),
    bcc = addresses(p.bcc, field .. ".bcc"),
    subject = check_string(p.subject, field .. ".subject"),
    headers = string_map(p.headers, field .. ".headers"),
    substitutions = string_map(p.substitutions, field .. ".substitutions"),
    custom_args = string_map(p.custom_args, field .. ".custom_args"),
    send_at = unix_time(p.send_at, field .. ".send_at"),
  }
  if p.from ~= nil then q.from = address(p.from, field .. ".from") end
  -- SendGrid refuses an address that appears twice in one personalization.
  local seen = {}
  for _, list in ipairs({ "to", "cc", "bcc" }) do
    for j, a in ipairs(q[list] or {}) do
      local key = a.email:lower()
      if seen[key] then
        bad(("%s.%s[%d]"):format(field, list, j), "%s appears twice in one personalization",
            a.email)
      end
      seen[key] = true
      seen_total.n = seen_total.n + 1
    end
  end
  local data = p.dynamic_template_data
  if data == nil then data = m.dynamic_template_data end
  if data ~= nil then
    if m.template_id == nil then
      bad(field .. ".dynamic_template_data", "needs template_id")
    end
    if type(data) ~= "table" then bad(field .. ".dynamic_template_data", "must be a table") end
    q.dynamic_template_data = data
  end
  return q
end

local function attachment(a, i)
  local field = ("attachments[%d]"):format(i)
  if type(a) ~= "table" then bad(field, "must be a table") end
  if type(a.content) ~= "string" or a.content == "" then
    bad(field .. ".content", "must be the file's bytes (a non-empty string)")
  end
  local out = {
    content = crypto.base64(a.content),
    filename = check_string(a.filename, field .. ".filename", true),
    type = check_string(a.type, field .. ".type"),
    content_id = check_string(a.content_id, field .. ".content_id"),
  }
  if a.disposition ~= nil then
    if a.disposition ~= "attachment" and a.disposition ~= "inline" then
      bad(field .. ".disposition", "must be \"attachment\" or \"inline\"")
    end
    out.disposition = a.disposition
  end
  if out.disposition == "inline" and out.content_id == nil then
    bad(field .. ".content_id", "is required for an inline attachment")
  end
  return out
end

-- The mail/send JSON for message `m` (see README.md); raises Invalid on a broken rule.
local function build(m)
  local body = { from = address(m.from, "from") }
  if m.reply_to ~= nil then body.reply_to = address(m.reply_to, "reply_to") end
  if m.reply_to_list ~= nil then body.reply_to_list = addresses(m.reply_to_list, "reply_to_list") end
  if m.template_id ~= nil then body.template_id = check_string(m.template_id, "template_id") end

  local ps = m.personalizations
  if ps == nil then
    ps = { { to = m.to, cc = m.cc, bcc = m.bcc } }
  elseif m.to ~= nil or m.cc ~= nil or m.bcc ~= nil then
    bad("personalizations", "give either to/cc/bcc or personalizations, not both")
  elseif not is_list(ps) or #ps == 0 then
    bad("personalizations", "must be a non-empty list")
  end
  local total = { n = 0 }
  body.personalizations = {}
  for i, p in ipairs(ps) do body.personalizations[i] = personalization(p, i, m, total) end
  if total.n > MAX_RECIPIENTS then
    bad("personalizations", "%d recipients; SendGrid takes at most %d a request", total.n,
        MAX_RECIPIENTS)
  end

  body.subject = check_string(m.subject, "subject")
  if body.subject == nil and body.template_id == nil then
    for i, p in ipairs(body.personalizations) do
      if p.subject == nil then
        bad(i == 1 and #body.personalizations == 1 and "subject" or
            ("personalizations[%d].subject"):format(i), "is required (or a template_id)")
      end
    end
  end

  -- text/plain must come first, then text/html (SendGrid's order rule), then the rest.
  local content = {}
  if m.text ~= nil then content[#content + 1] = { type = "text/plain", value = check_string(m.text, "text") } end
  if m.html ~= nil then content[#content + 1] = { type = "text/html", value = check_string(m.html, "html") } end
  if m.content ~= nil then
    if not is_list(m.content) then bad("content", "must be a list of {type, value}") end
    for i, c in ipairs(m.content) do
      local f = ("content[%d]"):format(i)
      if type(c) ~= "table" then bad(f, "must be {type = …, value = …}") end
      content[#content + 1] = { type = check_string(c.type, f .. ".type", true),
                                value = check_string(c.value, f .. ".value", true) }
    end
  end
  if #content > 0 then
    body.content = content
  elseif body.template_id == nil then
    bad("content", "is required: give text, html or content (or a template_id)")
  end

  if m.attachments ~= nil then
    if not is_list(m.attachments) then bad("attachments", "must be a list") end
    if #m.attachments > 0 then
      body.attachments = {}
      for i, a in ipairs(m.attachments) do body.attachments[i] = attachment(a, i) end
    end
  end

  if m.categories ~= nil then
    local cats = type(m.categories) == "string" and { m.categories } or m.categories
    if not is_list(cats) then bad("categories", "must be a list of strings") end
    if #cats > MAX_CATEGORIES then bad("categories", "at most %d", MAX_CATEGORIES) end
    for i, c in ipairs(cats) do
      if type(c) ~= "string" or c == "" or #c > 255 then
        bad(("categories[%d]"):format(i), "must be a string of 1 to 255 bytes")
      end
    end
    if #cats > 0 then body.categories = cats end
  end

  body.custom_args = string_map(m.custom_args, "custom_args")
  if body.custom_args and #json.encode(body.custom_args) > MAX_CUSTOM_ARGS_BYTES then
    bad("custom_args", "more than %d bytes", MAX_CUSTOM_ARGS_BYTES)
  end
  body.headers = string_map(m.headers, "headers")
  body.send_at = unix_time(m.send_at, "send_at")
  body.batch_id = check_string(m.batch_id, "batch_id")
  body.ip_pool_name = check_string(m.ip_pool_name, "ip_pool_name")

  if m.asm ~= nil then
    local a = m.asm
    if type(a) ~= "table" then bad("asm", "must be {group_id = …, groups_to_display = …}") end
    if math.type(a.group_id) ~= "integer" then bad("asm.group_id", "must be an integer") end
    body.asm = { group_id = a.group_id }
    if a.groups_to_display ~= nil then
      local g = a.groups_to_display
      if not is_list(g) or #g > MAX_GROUPS_TO_DISPLAY then
        bad("asm.groups_to_display", "must be a list of at most %d group ids",
            MAX_GROUPS_TO_DISPLAY)
      end
      for i, id in ipairs(g) do
        if math.type(id) ~= "integer" then
          bad(("asm.groups_to_display[%d]"):format(i), "must be an integer")
        end
      end
      if #g > 0 then body.asm.groups_to_display = g end
    end
  end

  for _, k in ipairs({ "tracking_settings", "mail_settings" }) do
    if m[k] ~= nil then
      if type(m[k]) ~= "table" then bad(k, "must be a table") end
      body[k] = m[k]
    end
  end
  if m.sandbox then
    -- A copy: the caller's mail_settings may be reused for a message that is not a test.
    local settings = {}
    for k, v in pairs(body.mail_settings or {}) do settings[k] = v end
    settings.sandbox_mode = { enable = true }
    body.mail_settings = settings
  end
  return body
end

local function plain(v)
  if v == nil or v == json.null then return nil end
  return tostring(v)
end

-- nil, err for an answer that is not a success: SendGrid's {"errors": [{message, field,
-- help}]} becomes err.errors (field and help of the first also on err).
local function api_error(res, what)
  local data = json.decode(res.body or "")
  local errors, parts = {}, {}
  if type(data) == "table" and type(data.errors) == "table" then
    for _, e in ipairs(data.errors) do
      if type(e) == "table" then
        local item = { message = plain(e.message), field = plain(e.field), help = plain(e.help) }
        errors[#errors + 1] = item
        parts[#parts + 1] = (item.message or "?") .. (item.field and (" (" .. item.field .. ")") or "")
      end
    end
  end
  local fields = { status = res.status, errors = errors }
  if errors[1] then fields.field, fields.help = errors[1].field, errors[1].help end
  if res.status == 429 then
    local reset = tonumber(res.headers["x-ratelimit-reset"] or "")
    if reset then fields.retry_after = math.max(0, reset - time.now()) end
  end
  local detail = #parts > 0 and table.concat(parts, "; ") or (res.body or ""):sub(1, 200)
  return fail("http", ("sendgrid: %s answered %d: %s"):format(what, res.status, detail), fields)
end

local Client = {}
Client.__index = Client

---Makes a client. conf: api_key (or plugins.sendgrid.api_key), base_url, and luar.http
---client options (timeout, retry, breaker, rate).
function M.client(conf)
  conf = conf or {}
  if type(conf) ~= "table" then error("sendgrid.client: expected a table of options", 2) end
  local key = conf.api_key or defaults.api_key
  if type(key) ~= "string" or key == "" then
    error("sendgrid.client: api_key is required (or plugins.sendgrid.api_key)", 2)
  end
  local base = conf.base_url or defaults.base_url or "https://api.sendgrid.com"
  if type(base) ~= "string" then error("sendgrid.client: base_url must be a string", 2) end
  local opts = { base_url = base, auth = { bearer = key },
                 headers = { ["User-Agent"] = "luar-sendgrid/" .. M.version } }
  for _, k in ipairs({ "timeout", "retry", "breaker", "rate", "rate_max_wait", "ca", "proxy" }) do
    opts[k] = conf[k]
  end
  return setmetatable({ http = http.client(opts) }, Client)
end

---Builds a message without sending it: the mail/send JSON as a table, or nil, err.
function Client:build(m)
  if type(m) ~= "table" then error("sendgrid: build expects the message table", 2) end
  local ok, body = pcall(build, m)
  if ok then return body end
  if getmetatable(body) == Invalid then
    return fail("invalid", "sendgrid: " .. body.message, { field = body.field })
  end
  error(body, 0)
end

---Sends one message ⏸: the X-Message-Id of the accepted message, or nil, err.
function Client:send(m)
  if type(m) ~= "table" then error("sendgrid: send expects the message table", 2) end
  local body, err = self:build(m)
  if not body then return nil, err end
  local res, herr = self.http:post("v3/mail/send", { json = body })
  if not res then return nil, herr end
  if res.status == 202 or res.status == 200 then
    return res.headers["x-message-id"] or "", res
  end
  return api_error(res, "POST /v3/mail/send")
end

---Any other v3 call ⏸: the decoded JSON body (true when empty) and the response, or nil, err.
function Client:request(method, path, opts)
  if type(method) ~= "string" or type(path) ~= "string" then
    error("sendgrid: request(method, path[, opts])", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("sendgrid: opts must be a table", 2) end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.method = method:upper()
  o.url = "v3/" .. path:gsub("^/+", ""):gsub("^v3/", "")
  local res, err = self.http:request(o)
  if not res then return nil, err end
  if res.status >= 400 then return api_error(res, o.method .. " /" .. o.url) end
  if res.body == nil or res.body == "" then return true, res end
  local data = json.decode(res.body)
  if data == nil then return res.body, res end
  return data, res
end

return M
