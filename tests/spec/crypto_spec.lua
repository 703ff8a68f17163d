local crypto = require "luar.crypto"

describe("luar.crypto", function()
  it("computes HMAC-SHA256 (RFC 4231 case 2) in raw, hex and base64", function()
    local key, data = "Jefe", "what do ya want for nothing?"
    local hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert.are.equal(hex, crypto.hmac("sha256", key, data, "hex"))
    assert.are.equal("W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
                     crypto.hmac("sha256", key, data, "base64"))
    local raw = crypto.hmac("sha256", key, data)
    assert.are.equal(32, #raw)
    assert.are.equal(hex, crypto.hex(raw))
  end)

  it("computes HMAC-SHA1 (RFC 2202 case 1)", function()
    assert.are.equal("b617318655057264e28bc0b6fb378c8ef146be00",
                     crypto.hmac("sha1", string.rep("\11", 20), "Hi There", "hex"))
  end)

  it("computes digests", function()
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                     crypto.digest("sha256", "abc", "hex"))
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d",
                     crypto.digest("sha1", "abc", "hex"))
    assert.are.equal("d41d8cd98f00b204e9800998ecf8427e", crypto.digest("md5", "", "hex"))
    assert.are.equal("ddaf35a193617abacc417349ae204131",
                     crypto.digest("sha512", "abc", "hex"):sub(1, 32))
    assert.are.equal("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
                     crypto.digest("sha256", "abc", "base64"))
  end)

  it("raises on an unknown algorithm or encoding", function()
    assert.has_error(function() crypto.hmac("nope", "k", "d") end)
    assert.has_error(function() crypto.digest("sha256", "d", "rot13") end)
    assert.has_error(function() crypto.hmac("sha256", nil, "d") end)
  end)

  it("encodes and decodes base64 and base64url (RFC 4648 vectors)", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, b64 in pairs(vectors) do
      assert.are.equal(b64, crypto.base64(plain))
      assert.are.equal(plain, crypto.unbase64(b64))
    end
    assert.are.equal("+/8=", crypto.base64("\251\255"))
    assert.are.equal("-_8", crypto.base64url("\251\255"))
    assert.are.equal("\251\255", crypto.unbase64url("-_8"))
  end)

  it("returns nil, err for malformed encoded input", function()
    local v, err = crypto.unhex("abc")
    assert.is_nil(v)
    assert.are.equal("invalid", err.kind)
    assert.is_nil((crypto.unhex("zz")))
    assert.is_nil((crypto.unbase64("@@@@")))
    assert.are.equal("\1\171", crypto.unhex("01AB"))
  end)

  it("compares in constant time", function()
    assert.is_true(crypto.equals("abc", "abc"))
    assert.is_false(crypto.equals("abc", "abd"))
    assert.is_false(crypto.equals("abc", "ab"))
  end)

  it("returns random bytes and v4 UUIDs", function()
    assert.are.equal(32, #crypto.random(32))
    assert.are_not.equal(crypto.random(16), crypto.random(16))
    assert.are.equal("", crypto.random(0))
    assert.has_error(function() crypto.random(-1) end)
    local id = crypto.uuid()
    assert.truthy(id:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x+$"))
    assert.are.equal(36, #id)
    assert.are_not.equal(id, crypto.uuid())
  end)
end)
