-- Receipts: one JSON document per successful payment, stored in S3 by a job
-- (receipts/<UTC day>/<payment intent>.json). Storing is idempotent: a retry or a
-- redelivered event writes the same key again.
local jobs = require "luar.jobs"
local json = require "luar.json"
local log = require "luar.log"
local metrics = require "luar.metrics"
local time = require "luar.time"
local storage = require "lib.storage"
local nonnull = require("lib.util").nonnull

local M = {}

local stored = metrics.counter("example_receipts_stored_total", "Receipts written to S3.")

function M.key(r)
  return "receipts/" .. storage.day(r.created) .. "/" .. r.payment_intent .. ".json"
end

jobs.define("store_receipt", { queue = "receipts", retries = 8, backoff = "exponential" },
  function(r)
    local key = M.key(r)
    local res, err = storage.bucket():put_object{
      key = key, body = json.encode(r), content_type = "application/json",
      metadata = { payment_intent = r.payment_intent },
    }
    if not res then error(err) end   -- S3 down or refusing: retried with backoff
    stored:inc()
    log.info("receipt stored", { key = key, payment_intent = r.payment_intent })
    return { key = key, etag = res.etag }
  end)

-- Enqueues the receipt of payment intent `pi` (cus: its Stripe customer, or nil).
function M.enqueue(pi, cus)
  local r = {
    payment_intent = pi.id,
    amount = pi.amount_received or pi.amount,
    currency = pi.currency,
    description = nonnull(pi.description),
    created = pi.created or math.floor(time.now()),
    customer = cus and { id = cus.id, email = nonnull(cus.email),
                         name = nonnull(cus.name) } or nil,
  }
  local id, err = jobs.enqueue("store_receipt", r, { key = "receipt:" .. pi.id })
  if not id then error(err) end
  return id
end

return M
