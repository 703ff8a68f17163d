-- Says at start-up, one line each, which providers run on a local stand-in instead of a
-- real account, and which variable switches the real one on. luar.conf.lua makes the
-- same choice (a key set → the provider; unset → the stand-in `make run` starts).
local log = require "luar.log"

local M = {}

M.providers = {
  { name = "stripe", env = { "STRIPE_API_KEY" },
    what = "customers are read from the local Stripe stand-in" },
  { name = "sendgrid", env = { "SENDGRID_API_KEY" },
    what = "mail goes to the local SendGrid stand-in" },
  { name = "s3", env = { "AWS_ACCESS_KEY_ID" },
    what = "receipts and reports go to the local S3 stand-in" },
  { name = "github", env = { "GITHUB_TOKEN", "GITHUB_API_BASE" },
    what = "user lookups ask the local GitHub stand-in" },
}

-- getenv is os.getenv; a spec passes its own. sentry_on: require("luar.sentry").enabled().
function M.announce(getenv, sentry_on)
  local off = {}
  for _, p in ipairs(M.providers) do
    local set = false
    for _, name in ipairs(p.env) do set = set or (getenv(name) or "") ~= "" end
    if not set then
      log.info(p.name .. ": " .. p.env[1] .. " is not set, " .. p.what,
               { integration = p.name, enable_with = p.env[1] })
      off[#off + 1] = p.name
    end
  end
  if not sentry_on then
    log.info("sentry: SENTRY_DSN is not set, errors are only logged",
             { integration = "sentry", enable_with = "SENTRY_DSN" })
    off[#off + 1] = "sentry"
  end
  return off
end

return M
