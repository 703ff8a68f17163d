-- Stripe webhooks at /hooks/stripe: signed for real by t.webhook, handled by jobs that
-- t.jobs.drain() runs; Stripe, SendGrid and S3 are stubbed (any host: the stand-ins'
-- or the real ones, whichever luar.conf.lua picked).
local t = require "luar.test"
local json = require "luar.json"

local ROUTE = "/hooks/stripe"

local function customer(id, fields)
  local c = { id = id, object = "customer", email = "ada@example.com", name = "Ada",
              metadata = {} }
  for k, v in pairs(fields or {}) do c[k] = v end
  return c
end

local function succeeded(pi_id, cus)
  return { id = "evt_" .. pi_id, object = "event", type = "payment_intent.succeeded",
           data = { object = { id = pi_id, object = "payment_intent", amount = 2000,
                               amount_received = 2000, currency = "eur", customer = cus,
                               created = 1795939190, status = "succeeded" } } }
end

local function stub_s3()
  return t.http.stub("PUT", "*/luar-example-receipts/receipts/*",
                     { status = 200, headers = { ETag = '"e1"' }, body = "" })
end

local function stub_sendgrid()
  return t.http.stub("POST", "*/v3/mail/send",
                     { status = 202, headers = { ["X-Message-Id"] = "msg-1" }, body = "" })
end

describe("payment_intent.succeeded", function()
  it("stores a receipt and welcomes a new customer, once", function()
    t.http.stub("GET", "*/v1/customers/cus_new", { status = 200, json = customer("cus_new") })
    t.http.stub("POST", "*/v1/customers/cus_new",
                { status = 200, json = customer("cus_new", { metadata = { welcomed_at = "1" } }) })
    stub_s3()
    stub_sendgrid()

    local res = t.webhook(ROUTE, "stripe", succeeded("pi_1", "cus_new"))
    assert.are.equal(200, res.status)
    assert.are.equal(1, res:json().jobs)

    -- The handler alone first: it enqueues the two jobs.
    t.jobs.drain({ max = 1 })
    local receipt = t.jobs.enqueued("store_receipt")
    assert.are.equal(1, #receipt)
    assert.are.equal("pi_1", receipt[1].args.payment_intent)
    assert.are.equal("ada@example.com", receipt[1].args.customer.email)
    local welcome = t.jobs.enqueued("send_welcome_email")
    assert.are.equal(1, #welcome)
    assert.are.equal("mail", welcome[1].queue)
    assert.are.same({ customer = "cus_new", email = "ada@example.com", name = "Ada" },
                    welcome[1].args)

    local report = t.jobs.drain()
    assert.are.equal(0, report.failed)
    assert.are.equal(2, report.succeeded)

    local put = t.http.requests("*/receipts/*")
    assert.are.equal(1, #put)
    assert.matches("/luar%-example%-receipts/receipts/2026%-11%-29/pi_1%.json$", put[1].url)
    local doc = put[1]:json()
    assert.are.equal(2000, doc.amount)
    assert.are.equal("eur", doc.currency)
    assert.are.equal("cus_new", doc.customer.id)

    local mail = t.http.requests("*/v3/mail/send")
    assert.are.equal(1, #mail)
    local m = mail[1]:json()
    assert.are.equal("ada@example.com", m.personalizations[1].to[1].email)
    assert.matches("Welcome", m.subject)

    local mark = t.http.requests("*/v1/customers/cus_new")
    assert.are.equal("POST", mark[#mark].method)
    assert.truthy(mark[#mark].body:find("metadata[welcomed_at]=", 1, true))
    assert.are.equal(1, #t.logs({ msg = "welcome mail sent", customer = "cus_new" }))

    -- Stripe redelivers the same event: nothing runs again.
    local again = t.webhook(ROUTE, "stripe", succeeded("pi_1", "cus_new"))
    assert.are.equal(200, again.status)
    assert.is_true(again:json().duplicate)
    assert.are.equal(0, t.jobs.drain().ran)
  end)

  it("does not welcome a customer twice", function()
    t.http.stub("GET", "*/v1/customers/cus_old",
                { status = 200,
                  json = customer("cus_old", { metadata = { welcomed_at = "1700000000" } }) })
    stub_s3()
    t.webhook(ROUTE, "stripe", succeeded("pi_2", "cus_old"))
    local report = t.jobs.drain()
    assert.are.equal(2, report.succeeded)   -- the handler and the receipt
    assert.are.equal(0, #t.http.requests("*/v3/mail/send"))
  end)

  it("folds a payment and a subscription of one new customer into one welcome", function()
    t.http.stub("GET", "*/v1/customers/cus_both", { status = 200, json = customer("cus_both") })
    t.webhook(ROUTE, "stripe", succeeded("pi_3", "cus_both"))
    t.webhook(ROUTE, "stripe", { id = "evt_sub_both", type = "customer.subscription.created",
                                 data = { object = { id = "sub_1", customer = "cus_both" } } })
    t.jobs.drain({ max = 2 })   -- the two handlers
    assert.are.equal(1, #t.jobs.enqueued("send_welcome_email"))
  end)

  it("keeps a receipt without a customer (a guest payment)", function()
    stub_s3()
    t.webhook(ROUTE, "stripe", succeeded("pi_4", json.null))
    local report = t.jobs.drain()
    assert.are.equal(2, report.succeeded)
    assert.is_nil(t.http.requests("*/receipts/*")[1]:json().customer)
    assert.are.equal(0, #t.jobs.enqueued("send_welcome_email"))
  end)

  it("keeps a receipt when Stripe no longer has the customer", function()
    t.http.stub("GET", "*/v1/customers/cus_gone", { status = 404, json = { error = {
      type = "invalid_request_error", code = "resource_missing", param = "id",
      message = "No such customer: 'cus_gone'" } } })
    stub_s3()
    t.webhook(ROUTE, "stripe", succeeded("pi_5", "cus_gone"))
    assert.are.equal(0, t.jobs.drain().failed)
    assert.are.equal(1, #t.logs({ msg = "stripe customer is gone", customer = "cus_gone" }))
    assert.are.equal(1, #t.http.requests("*/receipts/*"))
  end)

  it("fails the handler (to retry it) while Stripe is down", function()
    t.http.stub("GET", "*/v1/customers/cus_down",
                { status = 500, json = { error = { type = "api_error", message = "boom" } } })
    t.webhook(ROUTE, "stripe", succeeded("pi_6", "cus_down"))
    local report = t.jobs.drain()
    assert.are.equal(1, report.failed)
    assert.matches("boom", report.errors[1].error)
    local handler = t.jobs.enqueued("webhook:stripe:payment_succeeded")
    assert.are.equal(1, #handler)
    assert.are.equal("retrying", handler[1].state)
    assert.are.equal(0, #t.jobs.enqueued("store_receipt"))
  end)

  it("refuses a delivery whose signature does not match", function()
    local res = t.webhook(ROUTE, "stripe", succeeded("pi_7", "cus_x"), { tamper = true })
    assert.are.equal(401, res.status)
    assert.are.equal(0, #t.jobs.enqueued())
  end)
end)

describe("payment_intent.payment_failed", function()
  it("logs the decline", function()
    t.webhook(ROUTE, "stripe", { id = "evt_failed_1", type = "payment_intent.payment_failed",
      data = { object = { id = "pi_f1", customer = "cus_f", amount = 500, currency = "eur",
        last_payment_error = { code = "card_declined", decline_code = "insufficient_funds",
                               message = "Your card has insufficient funds." } } } })
    assert.are.equal(1, t.jobs.drain().succeeded)
    local line = t.logs({ msg = "payment failed", payment_intent = "pi_f1" })[1]
    assert.are.equal("warn", line.level)
    assert.are.equal("insufficient_funds", line.code)
    assert.are.equal("cus_f", line.customer)
  end)

  it("calls a failure Stripe gave no code for unknown", function()
    t.webhook(ROUTE, "stripe", { id = "evt_failed_2", type = "payment_intent.payment_failed",
                                 data = { object = { id = "pi_f2", customer = json.null,
                                                     last_payment_error = json.null } } })
    assert.are.equal(1, t.jobs.drain().succeeded)
    local line = t.logs({ msg = "payment failed", payment_intent = "pi_f2" })[1]
    assert.are.equal("unknown", line.code)
  end)
end)

describe("customer.subscription.created", function()
  local function created(id, cus)
    return { id = id, type = "customer.subscription.created",
             data = { object = { id = "sub_" .. id, customer = cus, status = "active" } } }
  end

  it("welcomes the new subscriber", function()
    t.http.stub("GET", "*/v1/customers/cus_sub", { status = 200, json = customer("cus_sub") })
    t.http.stub("POST", "*/v1/customers/cus_sub", { status = 200, json = customer("cus_sub") })
    stub_sendgrid()
    t.webhook(ROUTE, "stripe", created("evt_s1", "cus_sub"))
    assert.are.equal(2, t.jobs.drain().succeeded)
    assert.are.equal(1, #t.http.requests("*/v3/mail/send"))
  end)

  it("sends nothing to a customer without an email", function()
    t.http.stub("GET", "*/v1/customers/cus_nomail",
                { status = 200, json = customer("cus_nomail", { email = json.null }) })
    t.webhook(ROUTE, "stripe", created("evt_s2", "cus_nomail"))
    assert.are.equal(1, t.jobs.drain().succeeded)
    assert.are.equal(1, #t.logs({ msg = "no email on the customer: no welcome mail" }))
    assert.are.equal(0, #t.jobs.enqueued("send_welcome_email"))
  end)

  it("skips a deleted customer", function()
    t.http.stub("GET", "*/v1/customers/cus_del",
                { status = 200, json = { id = "cus_del", object = "customer", deleted = true } })
    t.webhook(ROUTE, "stripe", created("evt_s3", "cus_del"))
    assert.are.equal(1, t.jobs.drain().succeeded)
    assert.are.equal(1, #t.logs({ msg = "stripe customer is gone" }))
  end)
end)
