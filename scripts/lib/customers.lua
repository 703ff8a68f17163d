-- Stripe customers: who paid (the receipt and the welcome mail need their email) and
-- whether they were welcomed already. Stripe is the record: the mark is a metadata key on
-- the customer, so it holds across restarts, workers and instances.
local log = require "luar.log"
local stripe = require "luar.stripe"
local nonnull = require("lib.util").nonnull

local M = {}

local client -- made on first use, with plugins.stripe's key (luar.conf.lua)
local function api()
  client = client or stripe.client{}
  return client
end

-- The customer, or nil when Stripe no longer has it. Any other failure raises, so the
-- job calling this is retried (Stripe down, rate limited, breaker open).
function M.retrieve(id)
  local cus, err = api().customers:retrieve(id)
  if cus and not cus.deleted then return cus end
  if cus or err.status == 404 then
    log.warn("stripe customer is gone", { customer = id })
    return nil
  end
  error(err)
end

function M.welcomed(cus)
  return nonnull((nonnull(cus.metadata) or {}).welcomed_at) ~= nil
end

function M.mark_welcomed(id, at)
  return api().customers:update(id, { metadata = { welcomed_at = tostring(math.floor(at)) } })
end

return M
