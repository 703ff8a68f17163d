local json = require "luar.json"

describe("luar.json", function()
  it("decodes integral numbers as integers and keeps fractions as floats", function()
    local v = json.decode('{"n": 5, "f": 1.5, "a": [1, 2.0, -3], "big": 1e300}')
    assert.are.equal("integer", math.type(v.n))
    assert.are.equal("5", tostring(v.n))
    assert.are.equal("float", math.type(v.f))
    assert.are.equal("integer", math.type(v.a[2]))
    assert.are.equal(-3, v.a[3])
    assert.are.equal("float", math.type(v.big))
    assert.are.equal("integer", math.type(json.decode("7")))
  end)

  it("round-trips objects, arrays, strings and numbers", function()
    local v = json.decode(json.encode({ a = 1, b = { 1, 2, 3 }, s = "h\"i\n", f = 1.5 }))
    assert.are.same({ a = 1, b = { 1, 2, 3 }, s = "h\"i\n", f = 1.5 }, v)
  end)

  it("encodes a sequence as an array", function()
    assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
  end)

  it("maps JSON null to json.null", function()
    local v = json.decode('{"x":null,"y":[null]}')
    assert.are.equal(json.null, v.x)
    assert.are.equal(json.null, v.y[1])
    assert.are.equal('{"x":null}', json.encode({ x = json.null }))
  end)

  it("returns nil and an invalid error for malformed input", function()
    local v, err = json.decode("{not json")
    assert.is_nil(v)
    assert.are.equal("invalid", err.kind)
    assert.is_string(err.message)
    assert.truthy(tostring(err):find("^invalid: "))
  end)

  it("refuses nesting deeper than 128 levels without raising", function()
    local ok = json.decode(string.rep("[", 128) .. string.rep("]", 128))
    assert.is_table(ok)
    local v, err = json.decode(string.rep("[", 129) .. string.rep("]", 129))
    assert.is_nil(v)
    assert.are.equal("invalid", err.kind)
    local deep = string.rep("[", 100000)
    assert.is_nil((json.decode(deep)))
  end)

  it("raises when encoding a value JSON cannot hold", function()
    assert.has_error(function() json.encode({ f = function() end }) end)
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end)
  end)

  it("raises on a missing argument", function()
    assert.has_error(function() json.decode() end)
  end)
end)
