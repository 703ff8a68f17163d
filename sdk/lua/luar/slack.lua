---@meta
-- luar.slack (plugin `slack`, plugins/slack/README.md): Slack's Web API and incoming
-- webhooks on top of luar.http. The plugin also adds the `slack` webhook scheme
-- (webhooks.route(path, { scheme = "slack", secret = signing_secret })). Calls marked ⏸
-- yield the running handler, job or script.

---@class luar.slack
local slack = {}

---@class luar.slack.ClientOptions
---@field token string a bot or user token (xoxb-…, xoxp-…), sent as Authorization: Bearer
---@field base_url? string default "https://slack.com/api"
---@field timeout? number|{connect?: number, total?: number} seconds, as luar.http
---@field rate? string a client-side token bucket ("1/s", "50/m"), as luar.http
---@field max_retries? integer 429 answers waited out per call (default 3)
---@field max_retry_after? number longest Retry-After waited, seconds (default 60); longer fails at once

---@class luar.slack.Error: luar.Error
---@field kind "slack"|"rate_limited"|"http"|"invalid"|"timeout"|"connect"|"tls"|"breaker_open"|string
---@field code? string kind "slack": Slack's error ("channel_not_found", "invalid_auth", "no_text", …)
---@field response? table kind "slack" from the Web API: Slack's whole answer (warning, response_metadata)
---@field status? integer HTTP status (429 for "rate_limited"; the webhook's status for incoming webhooks)
---@field retry_after? number kind "rate_limited": the Retry-After Slack sent, seconds

---@class luar.slack.Client
local Client = {}

---@class luar.slack.Message
---@field channel string a channel id ("C0123…"), a user id for a DM, or "#name"
---@field text? string the text, or the notification fallback when blocks are given
---@field blocks? table[] Block Kit blocks
---@field attachments? table[]
---@field thread_ts? string reply in this thread
---@field [string] any any other chat.postMessage argument (mrkdwn, unfurl_links, …), sent as given

---⏸ chat.postMessage. `channel` and one of text/blocks/attachments are required (raises
---otherwise). Returns Slack's answer ({ok = true, channel, ts, message}) or nil, err.
---@param msg luar.slack.Message
---@return table|nil answer
---@return luar.slack.Error|nil err
function Client:chat_post_message(msg) end

---⏸ Any Web API method ("conversations.info", "reactions.add", …): POST with `params` as a
---JSON body (Content-Type application/json; charset=utf-8), or as a form when
---opts.form = true (for the methods that read no JSON). Slack's {"ok": false, "error": e}
---becomes nil, err{kind = "slack", code = e}; a 429 is waited out (Retry-After) up to
---max_retries times, then err.kind = "rate_limited".
---@param method string
---@param params? table
---@param opts? luar.slack.ApiOptions
---@return table|nil answer Slack's answer, ok = true
---@return luar.slack.Error|nil err
function Client:api(method, params, opts) end

---@class luar.slack.ApiOptions
---@field form? boolean send `params` as a form (for the methods that read no JSON)

---@class luar.slack.WebhookOptions
---@field timeout? number seconds per attempt
---@field max_retries? integer 429s waited out before giving up with kind "rate_limited"
---@field max_retry_after? number longest Retry-After waited, seconds

---Makes a Web API client (no I/O).
---@param opts luar.slack.ClientOptions
---@return luar.slack.Client
function slack.client(opts) end

---⏸ Posts to an incoming-webhook URL (https://hooks.slack.com/services/…). `message` is a
---table ({text =, blocks =, …}) or a string (the text). Returns true when Slack answers
---200 "ok", else nil, err{kind = "slack", code = Slack's answer ("invalid_payload",
---"no_text", "channel_is_archived", "invalid_token", …), status}. 429s are waited out as
---for the client. The URL's secret is kept out of logs.
---@param url string
---@param message table|string
---@param opts? luar.slack.WebhookOptions
---@return true|nil ok
---@return luar.slack.Error|nil err
function slack.incoming_webhook(url, message, opts) end

return slack
