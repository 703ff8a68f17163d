local ratelimit = require "luar.ratelimit"
local http = require "luar.http"

describe("luar.ratelimit.check", function()
  it("refuses a malformed limit or cost, naming it", function()
    local ok, err = pcall(ratelimit.check, "k", "10 per minute")
    assert.is_false(ok)
    assert.matches('"10 per minute"', err, 1, true)
    ok, err = pcall(ratelimit.check, "k", "10/m", { cost = 11 })
    assert.is_false(ok)
    assert.matches("more than the limit's burst", err, 1, true)
    ok, err = pcall(ratelimit.check, "k", "10/m", { cost = 0 })
    assert.is_false(ok)
    ok, err = pcall(ratelimit.check, "k", "10/m", { name = "" })
    assert.is_false(ok)
    assert.matches("option name", err, 1, true)
    ok = pcall(ratelimit.check, nil, "10/m")
    assert.is_false(ok)
  end)

  it("counts in the test queue, against the test clock", function()
    local t = require "luar.test"
    for _ = 1, 3 do assert.is_true((ratelimit.check("spec", "3/m"))) end
    local allowed, retry_after = ratelimit.check("spec", "3/m")
    assert.is_false(allowed)
    assert.is_true(retry_after > 0)
    t.clock.advance(60)
    assert.is_true((ratelimit.check("spec", "3/m")))
  end)
end)

describe("http.route guard options", function()
  local function route(opts)
    return pcall(http.route, "GET", "/spec/guard", function() end, opts)
  end

  it("names the option at fault", function()
    local cases = {
      { { rate = { limit = "lots" } }, "option rate.limit" },
      { { rate = { key = "ip" } }, "option rate.limit" },
      { { rate = { limit = "5/m", key = "cookie:x" } }, "option rate.key" },
      { { rate = { limit = "5/m", key = "header:" } }, "option rate.key" },
      { { rate = { limit = "5/m", key = 42 } }, "option rate.key" },
      { { rate = { limit = "5/m", name = "" } }, "option rate.name" },
      { { rate = { limit = "5/m", on_error = "maybe" } }, "option rate.on_error" },
      { { rate = { limit = "5/m", burst = 3 } }, "unknown field burst" },
      { { rate = 5 }, "option rate" },
      { { require_client_cert = "yes" }, "option require_client_cert" },
    }
    for _, c in ipairs(cases) do
      local ok, err = route(c[1])
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
    end
  end)

  it("accepts the documented forms", function()
    assert.is_true((pcall(http.route, "GET", "/spec/a", function() end,
      { rate = { limit = "100/m", key = "header:X-Api-Key", name = "api", on_error = "deny" },
        require_client_cert = true })))
    assert.is_true((pcall(http.route, "GET", "/spec/b", function() end,
      { rate = { limit = "1/s", key = function(req) return req.remote_addr end } })))
    assert.is_true((pcall(http.route, "GET", "/spec/c", function() end, { rate = "10/h" })))
    assert.is_true((pcall(http.route, "GET", "/spec/d", function() end, {})))
  end)
end)
