local log = require "luar.log"

describe("luar.log", function()
  it("accepts a message with and without fields", function()
    log.debug("spec debug line")
    log.debug("spec debug line", { n = 1, s = "x", nested = { a = true } })
  end)

  it("raises on a missing message or fields that are not a table", function()
    assert.has_error(function() log.info() end)
    assert.has_error(function() log.info("x", "not a table") end)
  end)

  it("refuses fields that are a list", function()
    local ok = pcall(log.error, "spec list fields", { 1, 2, 3 })
    assert.is_false(ok)
  end)
end)
