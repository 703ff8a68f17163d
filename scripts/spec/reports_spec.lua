-- The schedules (lib/reports.lua): the daily report at 09:00 in REPORT_TZ (Europe/Lisbon
-- by default) and the cleanup every 6 hours. Moving the clock enqueues their ticks.
local t = require "luar.test"
local jobs = require "luar.jobs"
local json = require "luar.json"

local BUCKET = "*/luar-example-receipts"

-- A ListObjectsV2 page, as S3 answers it.
local function listing(keys)
  local items = {}
  for _, k in ipairs(keys) do
    items[#items + 1] = "<Contents><Key>" .. k .. "</Key><LastModified>2026-11-29T09:00:00.000Z"
      .. "</LastModified><ETag>&quot;e&quot;</ETag><Size>10</Size>"
      .. "<StorageClass>STANDARD</StorageClass></Contents>"
  end
  return { status = 200, headers = { ["Content-Type"] = "application/xml" },
           body = '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
             .. "<Name>luar-example-receipts</Name><KeyCount>" .. #keys .. "</KeyCount>"
             .. "<IsTruncated>false</IsTruncated>" .. table.concat(items) .. "</ListBucketResult>" }
end

local function stub_receipts(day, receipts)
  local keys = {}
  for i, r in ipairs(receipts) do
    keys[i] = "receipts/" .. day .. "/pi_" .. i .. ".json"
    t.http.stub("GET", BUCKET .. "/" .. keys[i], { status = 200, json = r })
  end
  t.http.stub("GET", BUCKET .. "?*prefix=receipts*", listing(keys))
end

local function stub_sendgrid()
  t.http.stub("POST", "*/v3/mail/send", { status = 202, headers = { ["X-Message-Id"] = "m" },
                                          body = "" })
end

describe("daily_report", function()
  it("is due at 09:00 in Lisbon, once a day", function()
    local tick
    for _ = 1, 26 do   -- hour by hour until the next 09:00 (08:00 UTC in summer time)
      t.clock.advance(3600)
      tick = t.jobs.enqueued("daily_report")[1]
      if tick then break end
    end
    assert.truthy(tick, "no daily_report tick within 26 hours")
    assert.are.equal(0, tick.run_at % 3600)
    local hour = tonumber(os.date("!%H", tick.run_at))
    assert.truthy(hour == 9 or hour == 8,
                  "the tick is at " .. os.date("!%H:%M", tick.run_at) .. " UTC")
    t.clock.advance(12 * 3600)
    assert.are.equal(1, #t.jobs.enqueued("daily_report"))
  end)

  it("adds up the day's receipts, stores the report and mails it", function()
    stub_receipts("2026-11-28", { { amount = 2000, currency = "eur" },
                                  { amount = 550, currency = "eur" },
                                  { amount = 100, currency = "usd" } })
    t.http.stub("PUT", BUCKET .. "/reports/2026-11-28.json",
                { status = 200, headers = { ETag = '"r"' }, body = "" })
    stub_sendgrid()
    local id = jobs.enqueue("daily_report", { day = "2026-11-28" }, { queue = "reports" })
    assert.are.equal(1, t.jobs.drain().succeeded)
    local report = { day = "2026-11-28", payments = 3, totals = { eur = 2550, usd = 100 } }
    assert.are.same(report, jobs.get(id).result)
    assert.are.same(report, t.http.requests(BUCKET .. "/reports/*")[1]:json())
    local m = t.http.requests("*/v3/mail/send")[1]:json()
    assert.are.equal("ops@luar.example", m.personalizations[1].to[1].email)
    assert.are.equal("Daily report 2026-11-28", m.subject)
    assert.are.equal("3 payments on 2026-11-28: eur 25.50, usd 1.00", m.content[1].value)
  end)

  it("reports the UTC day before its tick, and says when there was nothing", function()
    stub_receipts("2026-11-28", {})
    t.http.stub("PUT", BUCKET .. "/reports/2026-11-28.json",
                { status = 200, headers = { ETag = '"r"' }, body = "" })
    stub_sendgrid()
    -- A job due at a past tick (2026-11-29T09:00Z) runs at once with that scheduled_at.
    local id = jobs.enqueue("daily_report", {}, { at = 1795942800, queue = "reports" })
    assert.are.equal(1, t.jobs.drain().succeeded)
    assert.are.equal(0, jobs.get(id).result.payments)
    assert.are.equal("0 payments on 2026-11-28: nothing",
                     t.http.requests("*/v3/mail/send")[1]:json().content[1].value)
  end)

  it("fails (and retries) when the receipts cannot be listed", function()
    t.http.stub("GET", BUCKET .. "?*", { status = 403,
      headers = { ["Content-Type"] = "application/xml" },
      body = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>" })
    jobs.enqueue("daily_report", { day = "2026-11-27" }, { queue = "reports" })
    local report = t.jobs.drain()
    assert.are.equal(1, report.failed)
    assert.matches("AccessDenied", report.errors[1].error)
  end)
end)

describe("cleanup", function()
  it("is due every 6 hours", function()
    t.clock.advance(6 * 3600)
    local ticks = t.jobs.enqueued("cleanup")
    assert.are.equal(1, #ticks)
    assert.are.equal(0, ticks[1].run_at % (6 * 3600))
  end)

  it("deletes reports older than 30 days, and keeps receipts", function()
    local old = "reports/2020-01-01.json"
    local recent = "reports/" .. os.date("!%Y-%m-%d", math.floor(t.clock.now())) .. ".json"
    t.http.stub("GET", BUCKET .. "?*prefix=reports*", listing({ old, recent }))
    t.http.stub("DELETE", BUCKET .. "/" .. old, { status = 204, body = "" })
    jobs.enqueue("cleanup", {}, { queue = "reports" })
    assert.are.equal(1, t.jobs.drain().succeeded)
    local deletes = t.http.requests(BUCKET .. "/reports/*")
    assert.are.equal(1, #deletes)
    assert.are.equal("DELETE", deletes[1].method)
    assert.matches("2020%-01%-01", deletes[1].url)
    assert.are.equal(1, #t.logs({ msg = "cleanup", removed = 1 }))
  end)
end)
