local crypto = require "luar.crypto"

-- AES-256-GCM through the Lua API: crypto.encrypt / crypto.decrypt (layout in
-- host/crypto/crypto.h: version, key id, aad check, length, nonce, ciphertext, tag).
describe("luar.crypto encrypt/decrypt", function()
  local key = crypto.unhex(string.rep("0f", 32))
  local other = crypto.unhex(string.rep("f0", 32))

  local function refused(blob, k, aad)
    local plain, err = crypto.decrypt(k or key, blob, aad)
    assert.is_nil(plain)
    assert.are.equal("invalid", err.kind)
    return err.message
  end

  it("round-trips text and binary, with and without aad", function()
    for _, plain in ipairs({ "hello", "", "\0\1\2\255 binary", string.rep("x", 100000) }) do
      local blob = crypto.encrypt(key, plain)
      assert.are.equal(#plain + 41, #blob)
      assert.are.equal(plain, crypto.decrypt(key, blob))
      local bound = crypto.encrypt(key, plain, "user:42")
      assert.are.equal(plain, crypto.decrypt(key, bound, "user:42"))
    end
  end)

  it("starts the blob with version 1 and never repeats a nonce", function()
    local a, b = crypto.encrypt(key, "same"), crypto.encrypt(key, "same")
    assert.are.equal(1, a:byte(1))
    assert.are_not.equal(a, b)
    assert.are_not.equal(a:sub(14, 25), b:sub(14, 25))
  end)

  it("names a wrong key", function()
    local msg = refused(crypto.encrypt(key, "secret"), other)
    assert.truthy(msg:find("wrong key", 1, true), msg)
  end)

  it("names a wrong or missing aad", function()
    local blob = crypto.encrypt(key, "secret", "order:1")
    assert.truthy(refused(blob, key, "order:2"):find("associated data", 1, true))
    assert.truthy(refused(blob, key):find("associated data", 1, true))
  end)

  it("refuses every truncation as truncated", function()
    local blob = crypto.encrypt(key, "0123456789")
    for n = 0, #blob - 1 do
      local msg = refused(blob:sub(1, n))
      assert.truthy(msg:find("truncated", 1, true), n .. ": " .. msg)
    end
  end)

  it("refuses a modified byte anywhere", function()
    local blob = crypto.encrypt(key, "attack at dawn", "aad")
    for i = 1, #blob do
      local byte = blob:byte(i)
      local bad = blob:sub(1, i - 1) .. string.char(byte ~ 0x40) .. blob:sub(i + 1)
      refused(bad, key, "aad")
      if i > 13 then
        assert.truthy(refused(bad, key, "aad"):find("modified", 1, true))
      end
    end
    assert.truthy(refused(blob .. "x", key, "aad"):find("modified", 1, true))
  end)

  it("names an unknown version", function()
    local blob = crypto.encrypt(key, "v")
    local msg = refused("\2" .. blob:sub(2))
    assert.truthy(msg:find("unknown blob version 2", 1, true), msg)
  end)

  it("gives tostring(err) a readable line", function()
    local _, err = crypto.decrypt(key, "")
    assert.truthy(tostring(err):find("^invalid: crypto.decrypt: truncated"))
  end)

  it("raises on a key that is not 32 bytes (a programming error)", function()
    assert.has_error(function() crypto.encrypt("short", "x") end)
    assert.has_error(function() crypto.encrypt(string.rep("k", 33), "x") end)
    assert.has_error(function() crypto.decrypt(string.rep("k", 31), "x") end)
    assert.has_error(function() crypto.encrypt(key, nil) end)
    assert.has_error(function() crypto.encrypt(key, "x", {}) end)
    local ok, msg = pcall(crypto.encrypt, crypto.hex(key), "x")
    assert.is_false(ok)
    assert.truthy(tostring(msg):find("32 raw bytes, got 64", 1, true), msg)
  end)

  it("works with a key from crypto.random", function()
    local k = crypto.random(32)
    assert.are.equal("v", crypto.decrypt(k, crypto.encrypt(k, "v")))
  end)
end)
