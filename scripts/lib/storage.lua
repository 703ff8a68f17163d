-- The S3 bucket of receipts and reports (the s3 plugin; credentials and endpoint from
-- plugins.s3 in luar.conf.lua). The client is made on first use.
local s3 = require "luar.s3"
local settings = require "lib.settings"

local M = {}

local client
function M.bucket()
  client = client or s3.client{ bucket = settings.receipts_bucket }
  return client
end

-- "2026-11-29" of a unix time, in UTC.
function M.day(t)
  return os.date("!%Y-%m-%d", math.floor(t))
end

return M
