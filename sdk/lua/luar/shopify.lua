---@meta
-- luar.shopify (plugin `shopify`, plugins/shopify/README.md): checks the signed query
-- strings Shopify sends to an app's own endpoints. Webhooks need no module: the plugin adds
-- the `shopify` webhook scheme (webhooks.route(path, { scheme = "shopify",
-- secret = client_secret })). No function here waits.

---@class luar.shopify
local shopify = {}

---@class luar.shopify.QueryOptions
---@field tolerance? number seconds: also require the `timestamp` parameter within now ± tolerance (default: not checked)
---@field now? number unix seconds to check the timestamp against (default luar.time.now())

---Verifies the `hmac` parameter of an OAuth install or callback redirect (and of the app's
---admin links): every other parameter but `signature`, sorted by name, form-encoded and
---joined with "&", HMAC-SHA256 (hex) with the app's client secret. `query` is the raw query
---string (req.query_string). Several secrets may be given (rotation).
---@param query string
---@param secret string|string[]
---@param opts? luar.shopify.QueryOptions
---@return true|nil ok
---@return luar.Error|nil err kind "invalid_signature" or "expired"
function shopify.verify_oauth(query, secret, opts) end

---Verifies the `signature` parameter of an app-proxy request: every other parameter,
---decoded, the values of a repeated name joined with ",", written name=value, sorted and
---concatenated without separator, HMAC-SHA256 (hex) with the app's client secret.
---@param query string
---@param secret string|string[]
---@param opts? luar.shopify.QueryOptions
---@return true|nil ok
---@return luar.Error|nil err kind "invalid_signature" or "expired"
function shopify.verify_proxy(query, secret, opts) end

return shopify
