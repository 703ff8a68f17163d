-- The welcome mail job (lib/welcome.lua, lib/mail.lua): SendGrid stubbed, retries made
-- due by moving the clock.
local t = require "luar.test"
local jobs = require "luar.jobs"

-- Makes retries due: a jump of the clock (t.clock.set) fires no schedule's ticks, which
-- would otherwise run (the cleanup every 6 hours) among the jobs drained.
local function later(seconds)
  t.clock.set(t.clock.now() + seconds)
end

local ARGS = { customer = "cus_w", email = "grace@example.com", name = "Grace" }
local SENT = { status = 202, headers = { ["X-Message-Id"] = "msg-w" }, body = "" }
local DOWN = { status = 503, json = { errors = { { message = "try later" } } } }

local function stub_mark(response)
  return t.http.stub("POST", "*/v1/customers/cus_w", response or
                     { status = 200, json = { id = "cus_w", object = "customer",
                                              metadata = { welcomed_at = "1" } } })
end

describe("send_welcome_email", function()
  it("retries a SendGrid outage with backoff, then sends and marks the customer", function()
    t.http.stub("POST", "*/v3/mail/send", { DOWN, SENT })
    stub_mark()
    jobs.enqueue("send_welcome_email", ARGS)
    local first = t.jobs.drain()
    assert.are.equal(1, first.failed)
    local waiting = t.jobs.enqueued("send_welcome_email")
    assert.are.equal("retrying", waiting[1].state)
    assert.are.equal(1, waiting[1].attempts)
    later(3600)   -- past any backoff of a first retry
    local second = t.jobs.drain()
    assert.are.equal(1, second.succeeded)
    assert.are.equal(2, #t.http.requests("*/v3/mail/send"))
    assert.are.equal(1, #t.http.requests("*/v1/customers/cus_w"))
    assert.are.equal(1, #t.logs({ msg = "welcome mail sent", attempt = 2 }))
  end)

  it("gives up after six attempts: the job is dead, with SendGrid's error", function()
    t.http.stub("POST", "*/v3/mail/send", DOWN)
    jobs.enqueue("send_welcome_email", ARGS)
    for _ = 1, 6 do
      t.jobs.drain()
      later(3600)
    end
    assert.are.equal(6, #t.http.requests("*/v3/mail/send"))
    local dead = t.jobs.dead("send_welcome_email")
    assert.are.equal(1, #dead)
    assert.are.equal(0, #t.jobs.enqueued("send_welcome_email"))
    -- On the way SendGrid's circuit breaker opened (5 failures in a row). It belongs to the
    -- process, not to this test: let it half-open and close it with a success, so the
    -- specs after this one find it closed.
    later(60)
    t.http.stub("POST", "*/v3/mail/send", SENT)
    stub_mark()
    jobs.enqueue("send_welcome_email", ARGS)
    assert.are.equal(1, t.jobs.drain().succeeded)
  end)

  it("waits out a 429 without spending an attempt", function()
    t.http.stub("POST", "*/v3/mail/send", {
      { status = 429,
        headers = { ["X-RateLimit-Reset"] = tostring(math.floor(t.clock.now()) + 30) },
        json = { errors = { { message = "too many requests" } } } },
      SENT })
    stub_mark()
    jobs.enqueue("send_welcome_email", ARGS)
    local first = t.jobs.drain()
    assert.are.equal(0, first.failed)
    assert.are.equal(1, #t.jobs.enqueued("send_welcome_email"))
    later(120)
    assert.are.equal(1, t.jobs.drain().succeeded)
    assert.are.equal(2, #t.http.requests("*/v3/mail/send"))
  end)

  it("gives up at once on a mail SendGrid refuses, logging an error", function()
    t.http.stub("POST", "*/v3/mail/send", { status = 400, json = { errors = {
      { message = "Does not contain a valid address.",
        field = "personalizations.0.to.0.email" } } } })
    jobs.enqueue("send_welcome_email", ARGS)
    local report = t.jobs.drain()
    assert.are.equal(1, report.succeeded)
    local line = t.logs({ msg = "sendgrid refused the mail" })[1]
    assert.are.equal("error", line.level)
    assert.are.equal(400, line.status)
    assert.are.equal(0, #t.http.requests("*/v1/customers/*"))   -- not marked: not welcomed
  end)

  it("only logs when Stripe cannot record the welcome (the mail has left)", function()
    t.http.stub("POST", "*/v3/mail/send", SENT)
    stub_mark({ status = 400, json = { error = { type = "invalid_request_error",
                                                 message = "bad metadata" } } })
    jobs.enqueue("send_welcome_email", ARGS)
    assert.are.equal(1, t.jobs.drain().succeeded)
    assert.are.equal(1, #t.logs({ msg = "welcome sent but not recorded in Stripe" }))
    assert.are.equal(1, #t.http.requests("*/v3/mail/send"))
  end)
end)
