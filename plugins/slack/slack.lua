-- luar.slack: Slack's Web API (chat.postMessage and any other method) and incoming
-- webhooks, on top of luar.http, which brings the breaker, timeouts, metrics and the
-- redaction of the Authorization header. Embedded in slack.so; plugin.c runs this chunk with
-- one argument, a function that asks the host to scrub a secret from logs.
local watch_secret = ...

local http = require "luar.http"
local json = require "luar.json"
local time = require "luar.time"

local slack = {}

local DEFAULT_BASE_URL = "https://slack.com/api"
local JSON_TYPE = "application/json; charset=utf-8" -- Slack warns "missing_charset" without

-- The one error shape of SPEC §4 (luar.error), so tostring(err) reads like every other
-- module's.
local lerror = require "luar.error"

local fail = lerror.fail

local watched = {}
local function watch(value)
  if type(value) == "string" and #value >= 6 and not watched[value] then
    watched[value] = true
    watch_secret(value)
  end
end

-- At most 200 bytes of a body, for messages.
local function excerpt(body)
  body = tostring(body or ""):gsub("%s+", " ")
  if #body > 200 then
    body = body:sub(1, 200) .. "…"
  end
  return body
end

local function check_retries(opts, where)
  local max_retries = opts.max_retries == nil and 3 or opts.max_retries
  local max_retry_after = opts.max_retry_after == nil and 60 or opts.max_retry_after
  if type(max_retries) ~= "number" or max_retries < 0 or max_retries % 1 ~= 0 then
    error(where .. ": max_retries must be a whole number >= 0", 3)
  end
  if type(max_retry_after) ~= "number" or max_retry_after < 0 then
    error(where .. ": max_retry_after must be a number of seconds >= 0", 3)
  end
  return max_retries, max_retry_after
end

-- Sends `send()` until it is not a 429, waiting out Retry-After. A 429 is Slack's word that
-- the call did nothing, so repeating it is safe; luar.http's own retries stay off (a POST
-- retried after a 5xx or a timeout could post a message twice). ⏸
local function with_rate_limit(what, max_retries, max_retry_after, send)
  local waits = 0
  while true do
    local res, err = send()
    if res == nil then
      return nil, err
    end
    if res.status ~= 429 then
      return res
    end
    local after = tonumber(res.headers["retry-after"]) or 1
    if waits >= max_retries or after > max_retry_after then
      return fail("rate_limited", ("%s: rate limited (HTTP 429) after %d wait%s"):format(
        what, waits, waits == 1 and "" or "s"), { status = 429, retry_after = after })
    end
    waits = waits + 1
    time.sleep(after)
  end
end

---- the Web API client ---------------------------------------------------------------------

local Client = {}
Client.__index = Client

function slack.client(opts)
  if type(opts) ~= "table" then
    error("slack.client: expects a table { token = … }", 2)
  end
  if type(opts.token) ~= "string" or opts.token == "" then
    error("slack.client: token must be a non-empty string (a bot token, xoxb-…)", 2)
  end
  local base_url = opts.base_url or DEFAULT_BASE_URL
  if type(base_url) ~= "string" or not base_url:match("^https?://") then
    error("slack.client: base_url must be an http(s) URL", 2)
  end
  local max_retries, max_retry_after = check_retries(opts, "slack.client")
  watch(opts.token)
  return setmetatable({
    base_url = base_url,
    max_retries = max_retries,
    max_retry_after = max_retry_after,
    http = http.client({ base_url = base_url, auth = { bearer = opts.token },
                         timeout = opts.timeout, rate = opts.rate }),
  }, Client)
end

-- Calls Web API method `method` ("chat.postMessage") with `params` as a JSON body (or as a
-- form with opts.form = true, for the methods that take no JSON). Returns Slack's answer
-- (a table with ok = true), or nil, err: kind "slack" with err.code = Slack's error
-- ("channel_not_found") and err.response the whole answer; "rate_limited" when 429s outlast
-- max_retries; "http" for another status; "invalid" when the answer is not JSON; or the
-- transport's error. ⏸
function Client:api(method, params, opts)
  if type(method) ~= "string" or not method:match("^[%a][%w%.]*$") then
    error("slack api: method must be a Web API method name such as \"chat.postMessage\"", 2)
  end
  if params ~= nil and type(params) ~= "table" then
    error("slack api: params must be a table", 2)
  end
  opts = opts or {}
  local req = { retry = false }
  if opts.form then
    req.form = params or {}
  else
    req.json = params or {}
    req.headers = { ["Content-Type"] = JSON_TYPE }
  end
  local what = "slack " .. method
  local res, err = with_rate_limit(what, self.max_retries, self.max_retry_after, function()
    return self.http:post(method, req)
  end)
  if res == nil then
    return nil, err
  end
  if res.status ~= 200 then
    return fail("http", ("%s: HTTP %d: %s"):format(what, res.status, excerpt(res.body)),
                { status = res.status })
  end
  local answer = json.decode(res.body)
  if type(answer) ~= "table" then
    return fail("invalid", ("%s: the answer is not a JSON object: %s"):format(
      what, excerpt(res.body)))
  end
  if answer.ok ~= true then
    local code = type(answer.error) == "string" and answer.error or "unknown_error"
    return fail("slack", ("%s: %s"):format(what, code), { code = code, response = answer })
  end
  return answer
end

-- chat.postMessage: msg = { channel =, text =, blocks =, thread_ts =, … } (every field is
-- passed to Slack as given). Returns Slack's answer (answer.ts, answer.channel,
-- answer.message) or nil, err as api(). ⏸
function Client:chat_post_message(msg)
  if type(msg) ~= "table" then
    error("slack chat_post_message: expects a table { channel =, text = | blocks = }", 2)
  end
  if type(msg.channel) ~= "string" or msg.channel == "" then
    error("slack chat_post_message: channel must be a channel id or name", 2)
  end
  if msg.text == nil and msg.blocks == nil and msg.attachments == nil then
    error("slack chat_post_message: give text, blocks or attachments", 2)
  end
  return self:api("chat.postMessage", msg)
end

---- incoming webhooks ----------------------------------------------------------------------

-- Posts `message` (a table such as { text =, blocks = }, or a string: the text) to an
-- incoming-webhook URL. Returns true, or nil, err: kind "slack" with err.code the text
-- Slack answers ("invalid_payload", "no_service", "channel_is_archived", …) and err.status;
-- "rate_limited" as api(); or the transport's error. ⏸
function slack.incoming_webhook(url, message, opts)
  if type(url) ~= "string" or not url:match("^https?://") then
    error("slack.incoming_webhook: url must be the webhook's http(s) URL", 2)
  end
  if type(message) == "string" then
    message = { text = message }
  elseif type(message) ~= "table" then
    error("slack.incoming_webhook: message must be a table or a string", 2)
  end
  opts = opts or {}
  local max_retries, max_retry_after = check_retries(opts, "slack.incoming_webhook")
  -- The URL's last segment is the webhook's secret: keep it out of logs.
  watch(url:match("([^/?#]+)/*$"))
  local res, err = with_rate_limit("slack incoming webhook", max_retries, max_retry_after,
    function()
      return http.post(url, { json = message, headers = { ["Content-Type"] = JSON_TYPE },
                              retry = false, timeout = opts.timeout })
    end)
  if res == nil then
    return nil, err
  end
  local text = (res.body or ""):match("^%s*(.-)%s*$")
  if res.status == 200 and text == "ok" then
    return true
  end
  local code = text:match("^[%w_]+$") or ("http_" .. res.status)
  return fail("slack", ("slack incoming webhook: %s (HTTP %d)"):format(
    text:match("^[%w_]+$") and text or excerpt(text), res.status),
    { code = code, status = res.status })
end

return slack
