local metrics = require "luar.metrics"

describe("luar.metrics", function()
  it("creates counters and increments them", function()
    local c = metrics.counter("spec_orders_total", "Orders seen", { "status" })
    c:inc(1, { status = "paid" })
    c:inc({ status = "paid" })
    c:inc(2.5, { status = "refunded" })
  end)

  it("returns the same family when registered again", function()
    local a = metrics.counter("spec_again_total", "Again", { "x" })
    local b = metrics.counter("spec_again_total", "Again", { "x" })
    a:inc(1, { x = "1" })
    b:inc(1, { x = "1" })
  end)

  it("refuses the same name with another type or labels", function()
    metrics.counter("spec_clash_total", "Clash")
    assert.has_error(function() metrics.gauge("spec_clash_total", "Clash") end)
    assert.has_error(function() metrics.counter("spec_clash_total", "Clash", { "y" }) end)
  end)

  it("sets and moves gauges", function()
    local g = metrics.gauge("spec_inflight", "In flight")
    g:set(3)
    g:inc()
    g:dec(2)
  end)

  it("observes histograms with custom buckets", function()
    local h = metrics.histogram("spec_duration_seconds", "Durations", { "route" }, { 0.1, 1, 10 })
    h:observe(0.5, { route = "/x" })
    assert.has_error(function() metrics.histogram("spec_bad_buckets", "Bad", {}, { 2, 1 }) end)
  end)

  it("raises on misuse", function()
    local c = metrics.counter("spec_misuse_total", "Misuse", { "a" })
    assert.has_error(function() c:inc(1, {}) end)   -- missing label
    assert.has_error(function() c:inc(-1, { a = "x" }) end)   -- counters only go up
    assert.has_error(function() c:set(1, { a = "x" }) end)   -- not a gauge
    assert.has_error(function() metrics.counter("bad name", "x") end)
    assert.has_error(function() metrics.counter("spec_le_total", "x", { "le" }) end)
  end)
end)
