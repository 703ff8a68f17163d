-- The start-up lines: one per provider left on its stand-in, naming the variable that
-- switches the real one on.
local t = require "luar.test"
local integrations = require "lib.integrations"

local function env(vars)
  return function(name) return vars[name] end
end

describe("integrations.announce", function()
  it("names every provider without a key, and Sentry without a DSN", function()
    local off = integrations.announce(env({}), false)
    assert.are.same({ "stripe", "sendgrid", "s3", "github", "sentry" }, off)
    for _, var in ipairs({ "STRIPE_API_KEY", "SENDGRID_API_KEY", "AWS_ACCESS_KEY_ID",
                           "GITHUB_TOKEN", "SENTRY_DSN" }) do
      local lines = t.logs({ enable_with = var })
      assert.are.equal(1, #lines, var)
      assert.matches(var .. " is not set", lines[1].msg, 1, true)
    end
  end)

  it("says nothing of a provider whose key is set (an empty one is unset)", function()
    local off = integrations.announce(env({ STRIPE_API_KEY = "sk_test_1", SENDGRID_API_KEY = "",
                                            AWS_ACCESS_KEY_ID = "AKIA1",
                                            GITHUB_API_BASE = "https://api.github.com" }), true)
    assert.are.same({ "sendgrid" }, off)
    assert.are.equal(1, #t.logs("is not set"))
  end)
end)
