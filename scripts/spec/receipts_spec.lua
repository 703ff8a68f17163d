-- The store_receipt job (lib/receipts.lua): S3 stubbed.
local t = require "luar.test"
local jobs = require "luar.jobs"

-- Makes retries due: a jump of the clock (t.clock.set) fires no schedule's ticks, which
-- would otherwise run (the cleanup every 6 hours) among the jobs drained.
local function later(seconds)
  t.clock.set(t.clock.now() + seconds)
end

local XML = { ["Content-Type"] = "application/xml" }
local RECEIPT = { payment_intent = "pi_r", amount = 1234, currency = "usd",
                  created = 1795939190, customer = { id = "cus_r", email = "r@example.com" } }

describe("store_receipt", function()
  it("puts the receipt in S3 as JSON, under its day", function()
    t.http.stub("PUT", "*/luar-example-receipts/receipts/2026-11-29/pi_r.json",
                { status = 200, headers = { ETag = '"abc"' }, body = "" })
    local id = jobs.enqueue("store_receipt", RECEIPT)
    assert.are.equal(1, t.jobs.drain().succeeded)
    local put = t.http.requests("*/receipts/*")[1]
    assert.are.equal("application/json", put.headers["content-type"])
    assert.are.equal("pi_r", put.headers["x-amz-meta-payment_intent"])
    assert.are.same(RECEIPT, put:json())
    assert.are.same({ key = "receipts/2026-11-29/pi_r.json", etag = '"abc"' }, jobs.get(id).result)
    assert.are.equal(1, #t.logs({ msg = "receipt stored", payment_intent = "pi_r" }))
  end)

  it("retries while S3 fails", function()
    t.http.stub("PUT", "*/receipts/*", {
      { status = 503, headers = XML, body = "<Error><Code>SlowDown</Code>"
          .. "<Message>Please reduce your request rate.</Message></Error>" },
      { status = 200, headers = { ETag = '"abc"' }, body = "" } })
    jobs.enqueue("store_receipt", RECEIPT)
    t.jobs.drain()
    later(3600)
    t.jobs.drain()
    local puts = t.http.requests("*/receipts/*")
    assert.is_true(#puts >= 2)
    assert.are.equal(0, #t.jobs.enqueued("store_receipt"))
    assert.are.equal(0, #t.jobs.dead("store_receipt"))
  end)

  it("fails the attempt when S3 refuses the request", function()
    t.http.stub("PUT", "*/receipts/*", { status = 403, headers = XML,
      body = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>" })
    jobs.enqueue("store_receipt", RECEIPT)
    local report = t.jobs.drain()
    assert.are.equal(1, report.failed)
    assert.matches("AccessDenied", report.errors[1].error)
    assert.are.equal("retrying", t.jobs.enqueued("store_receipt")[1].state)
  end)
end)
