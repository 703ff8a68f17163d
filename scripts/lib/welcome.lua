-- The welcome mail: a job with retries, enqueued once per customer (its key), sent
-- through SendGrid, then remembered on the Stripe customer so it is never sent twice.
local jobs = require "luar.jobs"
local log = require "luar.log"
local time = require "luar.time"
local customers = require "lib.customers"
local mail = require "lib.mail"
local nonnull = require("lib.util").nonnull

local M = {}

jobs.define("send_welcome_email", {
  queue = "mail",
  retries = 5,              -- six attempts in all, each retry after a random wait of up
  backoff = "exponential",  -- to 2, 4, 8, 16, 32 s; then the job is dead (dead-lettered)
  timeout = 60,
}, function(args, job)
  local id, later = mail.send("welcome", {
    to = { email = args.email, name = args.name },
    subject = "Welcome to Luar Example" .. (args.name and (", " .. args.name) or ""),
    text = "Thanks for your first payment. Your receipts are kept for you; reply to this "
        .. "mail if anything looks wrong.",
    html = "<p>Thanks for your first payment.</p><p>Your receipts are kept for you; reply "
        .. "to this mail if anything looks wrong.</p>",
    categories = { "welcome" },
    custom_args = { customer = args.customer },
  })
  if later then return later end
  if not id then return { sent = false } end
  -- The mail left: a failure to record it must not send it again, so it is only logged
  -- (at worst the customer gets a second welcome after their next payment).
  local ok, err = customers.mark_welcomed(args.customer, time.now())
  if not ok then
    log.warn("welcome sent but not recorded in Stripe", { customer = args.customer,
                                                          error = tostring(err) })
  end
  log.info("welcome mail sent", { customer = args.customer, message_id = id,
                                  attempt = job.attempt })
  return { sent = true, message_id = id }
end)

-- Enqueues the welcome mail of a Stripe customer who has none yet. The key folds
-- concurrent triggers (a payment and a subscription of the same new customer) into one job.
function M.maybe(cus)
  if customers.welcomed(cus) then return nil end
  local email = nonnull(cus.email)
  if not email then
    log.warn("no email on the customer: no welcome mail", { customer = cus.id })
    return nil
  end
  local id, err = jobs.enqueue("send_welcome_email",
                               { customer = cus.id, email = email, name = nonnull(cus.name) },
                               { key = "welcome:" .. cus.id })
  if not id then error(err) end
  return id
end

return M
