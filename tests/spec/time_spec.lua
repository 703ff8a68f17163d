local time = require "luar.time"

describe("luar.time", function()
  it("gives the wall clock as unix seconds", function()
    local now = time.now()
    assert.is_number(now)
    assert.is_true(math.abs(now - os.time()) < 2)
    assert.is_true(now % 1 ~= 0 or now == math.floor(now))
  end)

  it("gives a monotonic clock", function()
    local a = time.monotonic()
    local b = time.monotonic()
    assert.is_true(b >= a)
  end)

  it("sleeps by yielding and resumes after the delay", function()
    local t0 = time.monotonic()
    time.sleep(0.05)
    local elapsed = time.monotonic() - t0
    assert.is_true(elapsed >= 0.049, "slept only " .. elapsed)
    assert.is_true(elapsed < 2)
  end)

  it("resumes sleeps of nested coroutines in the order they were waited for", function()
    -- Concurrent tasks are covered by tests/unit/test_lua.c; here one task waits through
    -- two coroutines, each wait going through the bridge up to the task and back.
    local order = {}
    local slow = coroutine.wrap(function() time.sleep(0.03) order[#order + 1] = "slow" end)
    local fast = coroutine.wrap(function() time.sleep(0.01) order[#order + 1] = "fast" end)
    local t0 = time.monotonic()
    slow()
    fast()
    assert.are.same({ "slow", "fast" }, order)
    assert.is_true(time.monotonic() - t0 >= 0.039)
  end)

  it("works inside a coroutine that also yields values", function()
    local gen = coroutine.wrap(function()
      for i = 1, 3 do
        time.sleep(0.001)
        coroutine.yield(i)
      end
    end)
    assert.are.same({ 1, 2, 3 }, { gen(), gen(), gen() })
  end)

  it("rejects bad durations", function()
    assert.has_error(function() time.sleep(-1) end)
    assert.has_error(function() time.sleep("soon") end)
  end)

  it("refuses to wait inside code that cannot yield", function()
    local ok, err = pcall(table.sort, { 2, 1 }, function() time.sleep(0) return false end)
    assert.is_false(ok)
    assert.truthy(err:find("cannot wait here: time.sleep", 1, true))
  end)
end)
