-- Schedules: the daily report at 09:00 in the configured time zone (REPORT_TZ, with its
-- DST rules), and a cleanup every 6 hours. Each tick enqueues its job once, across every
-- worker and instance sharing the queue; the jobs below do the work, with retries.
local jobs = require "luar.jobs"
local json = require "luar.json"
local log = require "luar.log"
local metrics = require "luar.metrics"
local time = require "luar.time"
local mail = require "lib.mail"
local settings = require "lib.settings"
local storage = require "lib.storage"

local M = {}

local reports = metrics.counter("example_reports_total", "Daily reports written.")
local removed = metrics.counter("example_cleanup_removed_total", "Old reports removed.")

-- "eur 20.00, usd 5.50": totals in the smallest unit, shown in the main one.
local function money(totals)
  local parts = {}
  for currency, cents in pairs(totals) do
    parts[#parts + 1] = string.format("%s %.2f", currency, cents / 100)
  end
  table.sort(parts)
  return #parts > 0 and table.concat(parts, ", ") or "nothing"
end

-- The report of one UTC day: every receipt stored under receipts/<day>/.
function M.build(day)
  local bucket = storage.bucket()
  local report = { day = day, payments = 0, totals = {} }
  for obj, err in bucket:list_objects{ prefix = "receipts/" .. day .. "/" } do
    if not obj then error(err) end
    local got, gerr = bucket:get_object{ key = obj.key }
    if not got then error(gerr) end
    local r = json.decode(got.body)
    report.payments = report.payments + 1
    report.totals[r.currency] = (report.totals[r.currency] or 0) + r.amount
  end
  return report
end

-- 09:00 local time: the report of the UTC day before, stored next to the receipts and
-- mailed to REPORT_TO. A rerun (a retry, `luar enqueue daily_report`) rewrites the same
-- report and mails it again.
jobs.define("daily_report", { queue = "reports", retries = 3, backoff = "exponential" },
  function(args, job)
    local day = args.day or storage.day((job.scheduled_at or time.now()) - 86400)
    local report = M.build(day)
    local ok, err = storage.bucket():put_object{ key = "reports/" .. day .. ".json",
                                                 body = json.encode(report),
                                                 content_type = "application/json" }
    if not ok then error(err) end
    local summary = string.format("%d payments on %s: %s", report.payments, day,
                                  money(report.totals))
    local _, later = mail.send("report", { to = settings.report_to,
                                           subject = "Daily report " .. day, text = summary })
    if later then return later end
    reports:inc()
    log.info("daily report", { day = day, payments = report.payments })
    return report
  end)
jobs.cron("daily-report", "0 9 * * *", "daily_report", {}, { tz = settings.report_tz })

-- Every 6 hours: reports older than REPORT_KEEP_DAYS go (receipts stay: they are records).
jobs.define("cleanup", { queue = "reports", retries = 2 }, function(args, job)
  local cutoff = "reports/" .. storage.day((job.scheduled_at or time.now()) -
                                          settings.report_keep_days * 86400)
  local bucket, n = storage.bucket(), 0
  for obj, err in bucket:list_objects{ prefix = "reports/" } do
    if not obj then error(err) end
    if obj.key < cutoff then   -- reports/YYYY-MM-DD.json sort by date
      local ok, derr = bucket:delete_object{ key = obj.key }
      if not ok then error(derr) end
      n = n + 1
    end
  end
  removed:inc(n)
  log.info("cleanup", { removed = n, before = cutoff })
  return { removed = n }
end)
jobs.every("cleanup", 6 * 3600, "cleanup")

return M
