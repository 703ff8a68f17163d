local lerror = require "luar.error"
local json = require "luar.json"

describe("luar.error", function()
  it("makes a table the errors every module returns", function()
    local fields = { kind = "http", message = "card declined", status = 402, code = "card_declined" }
    local err = lerror.new(fields)
    assert.are.equal(fields, err) -- the same table, other fields kept
    assert.are.equal("card_declined", err.code)
    assert.are.equal("http: card declined (status 402)", tostring(err))
    assert.is_true(lerror.is(err))
    -- the host's own errors are the same kind of value
    local _, host_err = json.decode("{")
    assert.is_true(lerror.is(host_err))
    assert.are.equal(getmetatable(host_err), getmetatable(err))
  end)

  it("tells errors from other values", function()
    assert.is_false(lerror.is({ kind = "x", message = "y" }))
    assert.is_false(lerror.is("invalid: no"))
    assert.is_false(lerror.is(nil))
  end)

  it("refuses a table without kind or message, or with a metatable", function()
    assert.has_error(function() lerror.new({ message = "m" }) end)
    assert.has_error(function() lerror.new({ kind = "k" }) end)
    assert.has_error(function() lerror.new(setmetatable({ kind = "k", message = "m" }, {})) end)
    assert.has_error(function() lerror.new("kind") end)
  end)
end)

describe("luar.error.fail", function()
  it("returns nil and a new error holding a copy of the fields", function()
    local fields = { status = 429, retry_after = 2 }
    local v, err = lerror.fail("http", "slow down", fields)
    assert.is_nil(v)
    assert.is_true(lerror.is(err))
    assert.are.equal("http: slow down (status 429) (retry after 2.0 s)", tostring(err))
    assert.are_not.equal(fields, err)
    assert.is_nil(fields.kind) -- the caller's table is left alone
    local _, bare = lerror.fail("invalid", "no")
    assert.are.same({ kind = "invalid", message = "no" }, setmetatable(bare, nil))
    assert.has_error(function() lerror.fail("k") end)
    assert.has_error(function() lerror.fail("k", "m", "not a table") end)
  end)
end)
