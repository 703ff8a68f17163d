---@meta
-- luar.crypto: OpenSSL-backed helpers. Bad arguments raise; decoders return nil, err.

---@class luar.crypto
local crypto = {}

---@alias luar.crypto.Encoding "raw"|"hex"|"base64"|"base64url"

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

---AES-256-GCM: encrypts `plaintext` under `key` (exactly 32 raw bytes; another length
---raises) with a fresh random nonce. `aad` is authenticated, not encrypted: decrypting
---needs the same one. The blob is binary, 41 bytes longer than the plaintext (layout in
---docs/secrets.md).
---@param key string 32 raw bytes, e.g. crypto.random(32) or crypto.unhex(<64 hex digits>)
---@param plaintext string
---@param aad? string
---@return string blob
function crypto.encrypt(key, plaintext, aad) end

---Checks and decrypts a blob made by crypto.encrypt. A blob that does not authenticate gives
---nil and an error of kind "invalid" whose message names the reason: wrong key, wrong aad,
---truncated, modified, or unknown version. Nothing of such a blob is returned.
---@param key string 32 raw bytes (another length raises)
---@param blob string
---@param aad? string the aad given to encrypt
---@return string|nil plaintext
---@return luar.Error|nil err kind "invalid"
function crypto.decrypt(key, blob, aad) end

return crypto
