-- Mail through SendGrid (the plugin's client, key from plugins.sendgrid in luar.conf.lua).
local jobs = require "luar.jobs"
local log = require "luar.log"
local metrics = require "luar.metrics"
local sendgrid = require "luar.sendgrid"
local settings = require "lib.settings"

local M = {}

local sent = metrics.counter("example_emails_total",
                             "Mail handed to SendGrid, by kind and outcome.", { "kind", "outcome" })

local client
local function api()
  client = client or sendgrid.client{}
  return client
end

-- Sends `msg` (the plugin's send table; `from` defaults to MAIL_FROM) from a job and
-- returns SendGrid's message id. Failures are told apart for the job's retry policy:
--   429: returns nil and jobs.retry_in(the wait SendGrid asked for), which the job
--        returns: it runs again then, without spending an attempt;
--   another 4xx, or a message the plugin refuses (a bad address, an unknown sender):
--        logged as an error (a Sentry event) and given up, since a retry cannot fix it;
--   anything else (5xx, timeout, connection): raised, so the job retries with backoff.
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
