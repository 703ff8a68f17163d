---@meta
-- luar.crypto: OpenSSL-backed helpers. Bad arguments raise; decoders return nil, err.

---@class luar.crypto
local crypto = {}

---@alias luar.crypto.Encoding "hex"|"base64"|"base64url"

---HMAC of `data` with `key`; raw bytes unless `enc` is given.
---@param alg string "sha1", "sha256", "sha384", "sha512", "md5", "sha3-256", ...
---@param key string
---@param data string
---@param enc? luar.crypto.Encoding
---@return string
function crypto.hmac(alg, key, data, enc) end

---@param alg string
---@param data string
---@param enc? luar.crypto.Encoding
---@return string
function crypto.digest(alg, data, enc) end

---@param n integer 0 to 1048576
---@return string
function crypto.random(n) end

---Constant-time comparison.
---@param a string
---@param b string
---@return boolean
function crypto.equals(a, b) end

---@param s string
---@return string
function crypto.hex(s) end

---@param s string
---@return string|nil
---@return luar.Error|nil err kind "invalid"
function crypto.unhex(s) end

---@param s string
---@return string
function crypto.base64(s) end

---@param s string
---@return string|nil
---@return luar.Error|nil err
function crypto.unbase64(s) end

---@param s string
---@return string unpadded
function crypto.base64url(s) end

---@param s string padding optional
---@return string|nil
---@return luar.Error|nil err
function crypto.unbase64url(s) end

---A random (version 4) UUID, lower-case.
---@return string
function crypto.uuid() end

return crypto
