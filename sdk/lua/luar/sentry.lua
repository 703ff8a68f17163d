---@meta
-- luar.sentry: the Sentry plugin's Lua module (plugins/sentry, `plugins.sentry` in the
-- configuration). Uncaught errors and error-level log lines are reported without any
-- call; these functions report what a script catches itself. Without a dsn every capture
-- returns nil, "sentry is not configured (plugins.sentry.dsn)".

---@class luar.sentry
local sentry = {}

---@alias luar.sentry.level "debug"|"info"|"warning"|"error"|"fatal"

---@class luar.sentry.opts
---@field tags? table<string, string|number|boolean> tags of this event (names up to 32 bytes)
---@field extra? table<string, any> JSON-encoded into the event's `extra`
---@field user? table<string, any> the event's user (`id`, `email`, `username`, `ip_address`, …)
---@field level? luar.sentry.level capture_exception only; default "error"

--- Reports an error a script caught. `err` is a string (its "file:line:" prefix kept), a
--- luar error table (`kind` becomes the exception type, `message` its value, a `traceback`
--- field is used when present) or any value (tostring). The stack trace is the caller's.
--- Returns the event id (32 hex digits) once the event is queued for sending, or nil and
--- why it was not ("rate limited by Sentry", "dropped: the send queue is full").
---@param err any
---@param opts? luar.sentry.opts
---@return string|nil event_id
---@return string|nil why
function sentry.capture_exception(err, opts) end

--- Reports a message (a `logentry` event, no stack trace) at `level` (default "info").
---@param msg string
---@param level? luar.sentry.level
---@param opts? luar.sentry.opts
---@return string|nil event_id
---@return string|nil why
function sentry.capture_message(msg, level, opts) end

--- Sets (or with nil removes) a tag on every later event of this process: handlers' and
--- jobs' errors included. Process-wide, not per request: call it at the top of a script.
---@param name string 1 to 32 bytes
---@param value string|nil at most 200 bytes
function sentry.set_tag(name, value) end

--- Sets (or with nil clears) the user of every later event of this process (process-wide,
--- like set_tag; per-event users go in capture_*'s opts.user).
---@param user table|nil
function sentry.set_user(user) end

--- True when a dsn is configured and events are being sent.
---@return boolean
function sentry.enabled() end

return sentry
