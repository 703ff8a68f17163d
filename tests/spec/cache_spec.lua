-- luar.cache inside `luar test`, whose queue is the test session's temporary SQLite one:
-- misuse raises with the argument named, values that cannot be stored are refused before
-- any backend is asked, and TTLs follow the test clock (t.clock). What the
-- cache stores, expires, counts and shares is checked against real backends by
-- tests/unit/test_queue_contract.c and end to end by tests/e2e/test_cache.py.
local cache = require "luar.cache"

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.matches(pattern, tostring(err), 1, true)
end

describe("luar.cache arguments", function()
  it("refuses keys that are empty, too long, hold a NUL or are not strings", function()
    raises("the key is empty", cache.get, "")
    raises("the key is 513 bytes, more than 512", cache.get, string.rep("k", 513))
    raises("the key holds a NUL byte", cache.set, "a\0b", 1)
    raises("bad argument #1", cache.delete, {})
    raises("bad argument #1", cache.incr, nil)
    raises("bad argument #1", cache.remember, true, 10, function() end)
  end)

  it("refuses a ttl that is not a positive number of seconds", function()
    raises("the ttl must be a positive number", cache.set, "k", 1, 0)
    raises("the ttl must be a positive number", cache.set, "k", 1, -5)
    raises("the ttl must be a positive number", cache.set, "k", 1, 0 / 0)
    raises("the ttl must be a positive number", cache.incr, "k", 1, math.huge)
    raises("bad argument #3", cache.set, "k", 1, "soon")
    raises("the ttl must be a positive number", cache.remember, "k", 0, function() end)
  end)

  it("refuses a value no cache holds, and an increment that is not whole", function()
    raises("string, number, boolean, table or json.null expected, got function", cache.set, "k", print)
    raises("got thread", cache.set, "k", coroutine.create(print))
    raises("bad argument #2", cache.set, "k")
    raises("number has no integer representation", cache.incr, "k", 1.5)
    raises("bad argument #3", cache.remember, "k", 10, "not a function")
  end)

  it("answers a table lua-cjson cannot write with an invalid error, before the backend", function()
    local ok, err = cache.set("k", { f = print })
    assert.is_nil(ok)
    assert.are.equal("invalid", err.kind)
    assert.matches("cannot be stored as JSON", err.message, 1, true)
    ok, err = cache.set("k", { [1] = 1, [1000] = 2 }) -- excessively sparse
    assert.is_nil(ok)
    assert.are.equal("invalid", err.kind)
    local nested = {}
    local t = nested
    for _ = 1, 200 do t.x = {}; t = t.x end
    ok, err = cache.set("k", nested)
    assert.is_nil(ok)
    assert.are.equal("invalid", err.kind)
  end)
end)

describe("luar.cache under luar test", function()
  local t = require "luar.test"

  it("stores in the test queue, and its TTLs follow the test clock", function()
    assert.is_true(cache.set("k", { n = 1 }, 10))
    assert.same({ n = 1 }, cache.get("k"))
    t.clock.advance(11)
    assert.is_nil(cache.get("k"))
    assert.equal(2, cache.incr("c", 2, 60))
  end)

  it("calls remember's function once while the value is fresh", function()
    local calls = 0
    local function f() calls = calls + 1; return calls end
    assert.equal(1, cache.remember("r", 10, f))
    assert.equal(1, cache.remember("r", 10, f))
    assert.equal(1, calls)
  end)

  it("takes a number as a key", function()
    assert.is_true(cache.set(42, "v"))
    assert.equal("v", cache.get(42))
  end)

  it("starts every test empty", function()
    assert.is_nil(cache.get(42))
    assert.is_nil(cache.get("c"))
  end)
end)
