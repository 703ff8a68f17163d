-- The tour's small routes (README.md's five-minute tour uses them).
local t = require "luar.test"

describe("the tour routes", function()
  it("greets the world, and a name in a language", function()
    assert.are.equal("hello, world", t.request("GET", "/hello"):json().message)
    local res = t.request("GET", "/hello/ana", { query = { lang = "pt" } })
    assert.are.equal(200, res.status)
    assert.are.equal("olá, ana", res:json().message)
    assert.are.equal(1, #t.logs({ msg = "greeted", name = "ana", lang = "pt" }))
    -- an unknown language falls back to English
    res = t.request("GET", "/hello/bo", { query = { lang = "xx" } })
    assert.are.equal("hello, bo", res:json().message)
  end)

  it("echoes JSON, and refuses what is not JSON", function()
    local res = t.request("POST", "/echo", { json = { a = 1, b = { "x" } } })
    assert.are.equal(200, res.status)
    assert.are.same({ a = 1, b = { "x" } }, res:json().echo)
    res = t.request("POST", "/echo", { body = "{nope" })
    assert.are.equal(400, res.status)
    assert.matches("^invalid JSON", res:json().error)
  end)

  it("sleeps without blocking, capped at 5 s", function()
    local res = t.request("GET", "/slow", { query = { s = "0.01" } })
    assert.are.equal(0.01, res:json().slept)
  end)

  it("runs the demo webhook's handler as a job", function()
    local res = t.webhook("/hooks/demo", "standard", { type = "order.paid", data = { id = 42 } })
    assert.are.equal(200, res.status)
    assert.are.equal(1, res:json().jobs)
    local report = t.jobs.drain()
    assert.are.equal(1, report.succeeded)
    assert.are.equal(1, #t.logs({ msg = "order event", type = "order.paid", order = 42 }))
  end)
end)
