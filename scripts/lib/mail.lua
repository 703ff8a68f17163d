-- Mail through SendGrid (the plugin's client, key from plugins.sendgrid in luar.conf.lua).
local jobs = require "luar.jobs"
local log = require "luar.log"
local metrics = require "luar.metrics"
local sendgrid = require "luar.sendgrid"
local settings = require "lib.settings"

local M = {}

local sent = metrics.counter("example_emails_total", "Mail handed to SendGrid, by kind and outcome.",
                             { "kind", "outcome" })

local client
local function api()
  client = client or sendgrid.client{}
  return client
end

-- Sends `msg` (sendgrid's send table, `from` filled in) from a job. Returns SendGrid's
-- message id. What happens on failure is the job's retry policy, told apart here:
--   429 → jobs.retry_in(the wait SendGrid asked for): not a failure, no attempt spent;
--   other 4xx or a message the plugin refuses (a bad address, an unverified sender) → logged as an error (a Sentry event) and
--     given up: retrying cannot fix it;
--   anything else (5xx, timeout, connect) → raised: the job retries with backoff.
-- The second result is a jobs.retry_in value to return, or nil.
function M.send(kind, msg)
  msg.from = msg.from or settings.mail_from
  local id, err = api():send(msg)
  if id then
    sent:inc(1, { kind = kind, outcome = "sent" })
    return id
  end
  if err.status == 429 then
    sent:inc(1, { kind = kind, outcome = "throttled" })
    return nil, jobs.retry_in(err.retry_after or 60)
  end
  if err.kind == "invalid" or (err.status and err.status < 500) then
    sent:inc(1, { kind = kind, outcome = "refused" })
    log.error("sendgrid refused the mail", { kind = kind, status = err.status,
                                             field = err.field, error = err.message })
    return nil
  end
  sent:inc(1, { kind = kind, outcome = "failed" })
  error(err)
end

return M
