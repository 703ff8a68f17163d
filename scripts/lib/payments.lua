-- Stripe webhooks. POST /hooks/stripe is answered by the host: the Stripe-Signature is
-- checked with the stripe plugin's scheme (HMAC-SHA256 of "<t>.<body>", 300 s tolerance),
-- the event id deduplicated, and each handler below stored as a durable job before the
-- 200. A handler that raises is retried (then dead-lettered), so they raise on purpose
-- when Stripe cannot be reached. Try one locally:
--   ./build/luar webhook send --scheme stripe --secret whsec_luar_example_stripe \
--       --url http://127.0.0.1:8080/hooks/stripe scripts/events/payment_intent.succeeded.json
local log = require "luar.log"
local metrics = require "luar.metrics"
local webhooks = require "luar.webhooks"
local customers = require "lib.customers"
local receipts = require "lib.receipts"
local settings = require "lib.settings"
local welcome = require "lib.welcome"
local nonnull = require("lib.util").nonnull

local M = { route = "/hooks/stripe" }

local payments = metrics.counter("example_payments_total",
                                 "Stripe payment events handled, by outcome.", { "outcome" })
local amounts = metrics.histogram("example_payment_amount",
                                  "Successful payments, in the currency's smallest unit.",
                                  { "currency" }, { 500, 1000, 5000, 10000, 50000, 100000 })
local declines = metrics.counter("example_payment_failures_total",
                                 "Failed payments, by Stripe's decline (or error) code.",
                                 { "code" })

webhooks.route(M.route, { scheme = "stripe", secret = settings.stripe_webhook_secret })

-- The handlers' job names are given (`name`), so renaming a function never orphans jobs
-- already queued under the old name.

-- A payment went through: keep a receipt; welcome a customer who pays for the first time.
webhooks.on(M.route, "payment_intent.succeeded", { name = "stripe:payment_succeeded" },
  function(event)
    local pi = event.data.object
    payments:inc(1, { outcome = "succeeded" })
    amounts:observe(pi.amount_received or pi.amount, { currency = pi.currency })
    local id = nonnull(pi.customer)
    local cus = id and customers.retrieve(id)
    local receipt = receipts.enqueue(pi, cus)
    local welcome_job = cus and welcome.maybe(cus) or nil
    log.info("payment succeeded", { payment_intent = pi.id, customer = id, amount = pi.amount,
                                    currency = pi.currency, receipt_job = receipt,
                                    welcome_job = welcome_job })
  end)

-- A payment failed: nothing to do but say so (Stripe tells the customer; the metric
-- feeds an alert on a rising decline rate).
webhooks.on(M.route, "payment_intent.payment_failed", { name = "stripe:payment_failed" },
  function(event)
    local pi = event.data.object
    local e = nonnull(pi.last_payment_error) or {}
    local code = nonnull(e.decline_code) or nonnull(e.code) or "unknown"
    payments:inc(1, { outcome = "failed" })
    declines:inc(1, { code = code })
    log.warn("payment failed", { payment_intent = pi.id, customer = nonnull(pi.customer),
                                 code = code, reason = nonnull(e.message) })
  end)

-- A subscription started: its customer gets the welcome mail (once, see lib/welcome.lua).
webhooks.on(M.route, "customer.subscription.created", { name = "stripe:subscription_created" },
  function(event)
    local sub = event.data.object
    local cus = customers.retrieve(sub.customer)
    if cus then welcome.maybe(cus) end
  end)

return M
