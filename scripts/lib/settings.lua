-- The example's own settings, from the environment (scripts/README.md lists them all).
-- Provider keys are not here: luar.conf.lua at the repository root hands them to the
-- plugins and points a provider without a key at the stand-in `make run` starts.
local secrets = require "luar.secrets"

-- A variable's value (for secrets: the encrypted store first), or `default` when it is
-- unset or empty.
local function get(name, default, lookup)
  local v = (lookup or os.getenv)(name)
  if v == nil or v == "" then return default end
  return v
end

return {
  -- Stripe signs each delivery with the endpoint's secret (Dashboard → Webhooks, or
  -- `stripe listen`). The default is the demo secret `luar webhook send` uses below.
  stripe_webhook_secret = get("STRIPE_WEBHOOK_SECRET", "whsec_luar_example_stripe", secrets.get),
  receipts_bucket = get("RECEIPTS_BUCKET", "luar-example-receipts"),
  mail_from = { email = get("MAIL_FROM", "hello@luar.example"), name = "Luar Example" },
  report_to = get("REPORT_TO", "ops@luar.example"),
  report_tz = get("REPORT_TZ", "Europe/Lisbon"),
  report_keep_days = tonumber(get("REPORT_KEEP_DAYS", "30")),
  -- GitHub allows 60 requests an hour without a token, 5000 with one: stay under it.
  github_rate = get("GITHUB_TOKEN") and "5000/h" or "60/h",
}
