---@meta
-- luar.sendgrid (plugin `sendgrid`): SendGrid's v3 Mail Send API on top of luar.http, and
-- the `sendgrid` webhook scheme (signed Event Webhook, ECDSA P-256). See
-- plugins/sendgrid/README.md.

---@class luar.sendgrid
---@field version string the plugin's version
local sendgrid = {}

---@class luar.sendgrid.ClientOptions
---@field api_key? string "SG.…" (default: plugins.sendgrid.api_key); required one way or the other
---@field base_url? string default plugins.sendgrid.base_url or "https://api.sendgrid.com"
---@field timeout? number|{connect?: number, total?: number} luar.http's
---@field retry? false|luar.RetryOptions luar.http's (POST mail/send is not retried by default: SendGrid has no idempotency key)
---@field breaker? boolean|luar.BreakerOptions
---@field rate? string
---@field rate_max_wait? number
---@field ca? string
---@field proxy? string

---An address: "ada@example.com" or { email = "ada@example.com", name = "Ada" }.
---@alias luar.sendgrid.Address string|{email: string, name?: string}

---@class luar.sendgrid.Personalization
---@field to luar.sendgrid.Address|luar.sendgrid.Address[] at least one
---@field cc? luar.sendgrid.Address|luar.sendgrid.Address[]
---@field bcc? luar.sendgrid.Address|luar.sendgrid.Address[]
---@field from? luar.sendgrid.Address
---@field subject? string
---@field headers? table<string, string|number>
---@field substitutions? table<string, string|number> legacy templates
---@field dynamic_template_data? table overrides the message's
---@field custom_args? table<string, string|number>
---@field send_at? integer unix seconds

---@class luar.sendgrid.Attachment
---@field content string the file's bytes (the plugin base64-encodes them)
---@field filename string
---@field type? string MIME type, e.g. "application/pdf"
---@field disposition? "attachment"|"inline" default "attachment"
---@field content_id? string required for "inline" (referenced as cid:<content_id>)

---@class luar.sendgrid.Message
---@field from luar.sendgrid.Address
---@field reply_to? luar.sendgrid.Address
---@field reply_to_list? luar.sendgrid.Address[]
---@field to? luar.sendgrid.Address|luar.sendgrid.Address[] shorthand for one personalization (with cc, bcc)
---@field cc? luar.sendgrid.Address|luar.sendgrid.Address[]
---@field bcc? luar.sendgrid.Address|luar.sendgrid.Address[]
---@field personalizations? luar.sendgrid.Personalization[] instead of to/cc/bcc (at most 1000 recipients in all)
---@field subject? string required unless template_id, or each personalization has one
---@field text? string text/plain content (sent first, as SendGrid requires)
---@field html? string text/html content
---@field content? {type: string, value: string}[] more content blocks, after text and html
---@field template_id? string dynamic ("d-…") or legacy template; content and subject become optional
---@field dynamic_template_data? table for every personalization that has none of its own
---@field attachments? luar.sendgrid.Attachment[]
---@field categories? string|string[] at most 10
---@field custom_args? table<string, string|number> numbers are sent as strings
---@field headers? table<string, string|number>
---@field send_at? integer unix seconds, at most 72 h ahead
---@field batch_id? string
---@field ip_pool_name? string
---@field asm? {group_id: integer, groups_to_display?: integer[]} unsubscribe group
---@field tracking_settings? table sent as given (click_tracking, open_tracking, …)
---@field mail_settings? table sent as given
---@field sandbox? boolean sets mail_settings.sandbox_mode.enable (SendGrid validates, sends nothing)

---@class luar.sendgrid.Error: luar.Error
---@field field? string the field at fault ("personalizations[1].to[2]" before sending; SendGrid's own name after)
---@field help? string SendGrid's help link
---@field errors? {message?: string, field?: string, help?: string}[] every error SendGrid listed

---@class luar.sendgrid.Client
local Client = {}

---⏸ Sends one message: the X-Message-Id SendGrid assigned, and the response. A message
---that breaks a SendGrid rule returns nil, err{kind = "invalid", field} without sending;
---an error answer nil, err{kind = "http", status, field, help, errors}; transport failures
---luar.http's errors. A non-table argument raises.
---@param message luar.sendgrid.Message
---@return string|nil message_id
---@return luar.http.ClientResponse|luar.sendgrid.Error|nil res_or_err
function Client:send(message) end

---The mail/send JSON `send` would post (nothing is sent), or nil, err{kind = "invalid"}.
---@param message luar.sendgrid.Message
---@return table|nil body
---@return luar.sendgrid.Error|nil err
function Client:build(message) end

---⏸ Any other v3 call: `sg:request("GET", "suppression/bounces", { query = {…} })`. The
---path is relative to /v3. Returns the decoded JSON body (true when empty) and the
---response, or nil, err as for send.
---@param method string
---@param path string
---@param opts? luar.http.RequestOptions without method and url
---@return any|nil data
---@return luar.http.ClientResponse|luar.sendgrid.Error|nil res_or_err
function Client:request(method, path, opts) end

---Makes a client. Raises when no API key is given or configured.
---@param opts? luar.sendgrid.ClientOptions
---@return luar.sendgrid.Client
function sendgrid.client(opts) end

return sendgrid
