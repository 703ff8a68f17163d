---@meta
-- luar.webhooks: inbound webhook routes whose events are verified, deduplicated and stored
-- before the 2xx, with handlers that run as durable jobs (webhooks.route, webhooks.on);
-- signature checks on demand (webhooks.verify); outbound, signed, retried delivery
-- (webhooks.deliver). See docs/receiving-webhooks.md.

---@class luar.webhooks
local webhooks = {}

---@class luar.webhooks.RouteOptions
---@field scheme? string "standard" (Standard Webhooks / Svix), "hmac", or a plugin's ("stripe", "github", …); required unless `verify = false`
---@field secret? string the signing secret ("whsec_…" for standard)
---@field secrets? string[] several secrets accepted at once (rotation); at most 8
---@field tolerance? number seconds a signature's timestamp may be in the past or future (default 300)
---@field dedupe? number|false seconds an event id is remembered (default 604800, 7 days); false: no deduplication
---@field max_body? integer|string largest body in bytes or as "64KiB"; only lowers the server's `limits.max_body`
---@field verify? boolean false: no signature check at all (logged as a warning at load)
---@field sync? boolean the first matching handler runs inline and its return value is the response (no job, no dedupe)
---@field queue? string queue of the handler jobs (default "webhooks")
---@field retries? integer retries of a handler job after its first attempt (default 3)
---@field backoff? "exponential"|number|fun(attempt: integer): number delay before a retry
---@field backoff_cap? number cap of the exponential backoff in seconds (default 3600)
---@field timeout? number seconds a handler attempt may take
---@field priority? integer handler jobs' priority
---@field header? string hmac: the signature header, e.g. "X-Signature"
---@field algorithm? "sha1"|"sha256"|"sha512" hmac (default "sha256")
---@field encoding? "hex"|"base64" hmac (default "hex")
---@field prefix? string hmac: text before the signature, e.g. "sha256="
---@field timestamp_header? string hmac: a header with unix seconds, checked against the tolerance
---@field signed_content? string hmac: what is signed, e.g. "{timestamp}.{body}" (default "{body}")
---@field secret_format? "base64"|"raw" standard: how the secret is written (default base64 after "whsec_")
---@field event? string github: the X-GitHub-Event a signed test delivery carries (default "ping"; signing only)
---@field topic? string shopify: the X-Shopify-Topic a signed test delivery carries (signing only)
---@field shop? string shopify: the X-Shopify-Shop-Domain a signed test delivery carries (signing only)
---@field rate? luar.http.RateOptions|string route guard as on http.route: over the limit 429 + Retry-After before the signature is checked; a key function must not wait
---@field require_client_cert? boolean 403 unless the request came over TLS with a verified client certificate

---Declares a webhook route: POST `path` is answered in C — body size, signature, events,
---then each event's handler jobs and its dedupe record in one durable commit, and only then
---200 `{"received": true, "id": …, "jobs": n}` (a redelivered id: `{"duplicate": true}`).
---401 bad/missing/expired signature, 400 malformed body, 413 too large, 503 (Retry-After)
---when the queue backend cannot store it. Call while the scripts load; raises on misuse.
---@param path string route pattern, e.g. "/hooks/stripe"
---@param opts luar.webhooks.RouteOptions
---@return string path
function webhooks.route(path, opts) end

---@class luar.webhooks.Meta
---@field id string the provider's event id (what deduplication keys on)
---@field type string the event type ("charge.succeeded")
---@field route string the route pattern
---@field scheme string the route's scheme ("none" with verify = false)
---@field received_at number unix seconds when the delivery arrived
---@field request_id string the delivery's request id
---@field attempt integer 1 for the first run of the handler
---@field job_id? string the handler job's id (nil on sync routes)
---@field headers table<string, string> the delivery's headers, lower-case, without signatures and credentials

---@class luar.webhooks.HandlerOptions
---@field name? string names the handler's job "webhook:<name>" (default "webhook:<route>:<pattern>"); keep it stable across deploys
---@field queue? string
---@field retries? integer
---@field backoff? "exponential"|number|fun(attempt: integer): number
---@field backoff_cap? number
---@field timeout? number
---@field priority? integer

---Runs `fn(event, meta)` for each event of `route` whose type matches `pattern` (AMQP topic
---rules: words split on ".", "*" one word, "#" zero or more). Each matching handler is one
---durable job: raise to fail the attempt (retried, then dead-lettered). On a sync route the
---first matching handler answers the request instead (its return value as for http.route).
---@param route string the path given to webhooks.route
---@param pattern string
---@param opts luar.webhooks.HandlerOptions|fun(event: any, meta: luar.webhooks.Meta): any
---@param fn? fun(event: any, meta: luar.webhooks.Meta): any
function webhooks.on(route, pattern, opts, fn) end

---@class luar.webhooks.VerifyRequest
---@field headers table<string, string|string[]> any case; a list for a repeated header
---@field body string
---@field secret? string
---@field secrets? string[]
---@field tolerance? number seconds (default 300)
---@field now? number unix seconds instead of the clock (tests)
---@field header? string hmac: the signature header (the other hmac and standard options of luar.webhooks.RouteOptions apply too)
---@field algorithm? "sha1"|"sha256"|"sha512" hmac
---@field encoding? "hex"|"base64" hmac
---@field prefix? string hmac
---@field timestamp_header? string hmac
---@field signed_content? string hmac
---@field secret_format? "base64"|"raw" standard

---Verifies a request's signature with a scheme, outside a webhook route (see
---docs/webhook-schemes.md). Other keys of `req` are the scheme's options. Raises on misuse
---(unknown scheme or option, no secret).
---@param scheme string
---@param req luar.webhooks.VerifyRequest
---@return true|nil ok
---@return luar.Error|nil err kind "invalid_signature" or "expired"
function webhooks.verify(scheme, req) end

---@class luar.webhooks.Delivery
---@field url string endpoint: absolute http:// or https:// URL (public addresses only unless webhooks.deliver_allow_private)
---@field secret string the endpoint's Standard Webhooks secret, "whsec_" + base64
---@field type string event type, e.g. "invoice.paid"
---@field payload any JSON-encodable event data (the body's `data`)
---@field id? string message id (webhook-id) and idempotency key: the same id to the same URL within 24 h is sent once. Default: a new "msg_" + KSUID
---@field headers? table<string, string> extra headers (not Content-Type, Content-Length, Host, Transfer-Encoding or webhook-*)
---@field timeout? number seconds per attempt (default 15, at most 300)

---⏸ Durably enqueues a Standard-Webhooks-signed POST of {"type","timestamp","data"}; retried on
---webhooks.deliver_schedule (default Svix's: 8 attempts over ~27.6 h), held while the endpoint's
---breaker is open, then dead-lettered (`luar jobs retry` resends). See docs/sending-webhooks.md.
---@param d luar.webhooks.Delivery
---@return string|nil id the message id (webhook-id)
---@return string|luar.Error|nil job the delivering job's id (nil when `id` was a duplicate), or err: kind "invalid", "private_address" or "backend"
function webhooks.deliver(d) end

return webhooks
