---@meta
-- luar.stripe (the stripe plugin): a Stripe API client on luar.http — generic resource
-- calls, automatic pagination, Stripe's form encoding, an Idempotency-Key on every POST,
-- Stripe's errors as `nil, err` — and thin helpers for customers, PaymentIntents, charges,
-- subscriptions and refunds. Every call waits (⏸): use it in handlers, jobs and `luar run`
-- scripts. The `stripe` webhook scheme is the plugin's too (webhooks.route{scheme="stripe"}).
-- See plugins/stripe/README.md.

---@class luar.stripe
---@field version string the plugin's version
---@field api_version string the Stripe-Version clients send unless told otherwise
local stripe = {}

---@class luar.stripe.ClientOptions
---@field api_key? string secret key (sk_…/rk_…); default plugins.stripe.api_key, else luar.secrets.get(plugins.stripe.api_key_secret or "STRIPE_API_KEY")
---@field api_version? string Stripe-Version header (default plugins.stripe.api_version, else the version the plugin pins)
---@field base_url? string default "https://api.stripe.com" (without /v1)
---@field stripe_account? string Stripe-Account header on every call (Connect)
---@field timeout? number seconds per attempt (default 80)
---@field max_network_retries? integer retries after the first attempt (default 2); ignored when `retry` is given
---@field retry? luar.RetryOptions|false luar.http's retry options (default: attempts = max_network_retries + 1, on 409, 429, 500, 502, 503, 504)
---@field breaker? luar.BreakerOptions|false luar.http's circuit breaker options
---@field rate? string a client-side rate limit such as "25/s"
---@field rate_max_wait? number seconds a call may wait for the rate limit
---@field headers? table<string, string> extra headers on every call
---@field ca? string PEM file of trusted CAs (for a proxy or a stand-in)
---@field verify? boolean false disables certificate checks (tests only)
---@field proxy? string an HTTP or SOCKS proxy URL

---@class luar.stripe.CallOptions
---@field idempotency_key? string|false the Idempotency-Key (default on POST: "luar-<uuid>", one per call, the same on each retry of it); false sends none
---@field stripe_account? string Stripe-Account for this call
---@field api_version? string Stripe-Version for this call
---@field api_key? string another key for this call
---@field headers? table<string, string> extra headers
---@field timeout? number seconds for each attempt

---A Stripe error: `kind = "http"` for an answer >= 400 (other kinds come from luar.http:
---"timeout", "connect", "breaker_open", … and "invalid" for a 2xx that is not JSON).
---@class luar.stripe.Error: luar.Error
---@field type? string "card_error", "invalid_request_error", "api_error", "idempotency_error", "rate_limit_error", …
---@field code? string "card_declined", "resource_missing", "parameter_missing", "rate_limit", …
---@field decline_code? string "insufficient_funds", "generic_decline", … (card errors)
---@field param? string the parameter at fault ("amount", "items[0][price]")
---@field doc_url? string
---@field request_id? string the Request-Id header (quote it to Stripe support)
---@field raw? table the whole `error` object of the body (payment_intent, charge, …)

---A Stripe object (customer, payment_intent, list, …) as decoded JSON.
---@alias luar.stripe.Object table<string, any>

---@class luar.stripe.Client
---@field customers luar.stripe.Customers
---@field payment_intents luar.stripe.PaymentIntents
---@field charges luar.stripe.Charges
---@field subscriptions luar.stripe.Subscriptions
---@field refunds luar.stripe.Refunds
---@field base_url string
---@field api_version string
local Client = {}

---Makes a client. Raises when no API key is found or an option is wrong.
---@param opts? luar.stripe.ClientOptions
---@return luar.stripe.Client
function stripe.client(opts) end

---Stripe's form encoding of `params` (what the client sends): nested keys `a[b][0][c]`, map
---keys sorted, lists from 0, booleans as true/false, `""`, `{}` or luar.json.null as an
---empty value (unsets the field). Raises on values that have no encoding.
---@param params? table
---@return string
function stripe.encode(params) end

---Any call: `path` is relative to /v1 ("customers/cus_1/balance_transactions") or absolute
---("/v2/…"). GET and DELETE send `params` in the query, other methods in the body. ⏸
---@param method string
---@param path string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Client:request(method, path, params, opts) end

---POST /v1/<resource>. ⏸
---@param resource string "customers", "payment_intents", "products", …
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Client:create(resource, params, opts) end

---GET /v1/<resource>/<id> (`params`: expand, …). ⏸
---@param resource string
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Client:retrieve(resource, id, params, opts) end

---POST /v1/<resource>/<id>. ⏸
---@param resource string
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Client:update(resource, id, params, opts) end

---DELETE /v1/<resource>/<id>. ⏸
---@param resource string
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Client:delete(resource, id, params, opts) end

---Every object of GET /v1/<resource>, fetching pages as the loop goes (has_more +
---starting_after; ending_before pages backwards; search results follow next_page):
---`for obj, err in c:list("customers", {limit = 100}) do if not obj then … end end`.
---A failed page yields `false, err` once and the loop ends. ⏸ (each page)
---@param resource string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return fun(): (luar.stripe.Object|false|nil), luar.stripe.Error?
function Client:list(resource, params, opts) end

---@class luar.stripe.Resource
local Resource = {}
---⏸
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Resource:create(params, opts) end
---⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Resource:retrieve(id, params, opts) end
---⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Resource:update(id, params, opts) end
---An iterator over every object, as Client:list. ⏸
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return fun(): (luar.stripe.Object|false|nil), luar.stripe.Error?
function Resource:list(params, opts) end

---A resource Stripe's Search API covers (customers, payment_intents, charges,
---subscriptions here; refunds have no search).
---@class luar.stripe.SearchableResource: luar.stripe.Resource
local SearchableResource = {}
---GET /v1/<resource>/search as an iterator (`params.query`, e.g. "email:'a@b.c'"). ⏸
---@param params table
---@param opts? luar.stripe.CallOptions
---@return fun(): (luar.stripe.Object|false|nil), luar.stripe.Error?
function SearchableResource:search(params, opts) end

---@class luar.stripe.Customers: luar.stripe.SearchableResource
local Customers = {}
---DELETE /v1/customers/<id>. ⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil deleted {id, object, deleted = true}
---@return luar.stripe.Error|nil err
function Customers:delete(id, params, opts) end

---@class luar.stripe.PaymentIntents: luar.stripe.SearchableResource
local PaymentIntents = {}
---POST /v1/payment_intents/<id>/confirm. ⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function PaymentIntents:confirm(id, params, opts) end
---POST /v1/payment_intents/<id>/capture (amount_to_capture, …). ⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function PaymentIntents:capture(id, params, opts) end
---POST /v1/payment_intents/<id>/cancel (cancellation_reason). ⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function PaymentIntents:cancel(id, params, opts) end

---@class luar.stripe.Charges: luar.stripe.SearchableResource
local Charges = {}
---POST /v1/charges/<id>/capture (legacy charges made with capture = false). ⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Charges:capture(id, params, opts) end

---@class luar.stripe.Subscriptions: luar.stripe.SearchableResource
local Subscriptions = {}
---DELETE /v1/subscriptions/<id>: cancels at once (params: invoice_now, prorate,
---cancellation_details); to cancel at the period's end, update cancel_at_period_end. ⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Subscriptions:cancel(id, params, opts) end
---POST /v1/subscriptions/<id>/resume (a paused subscription). ⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Subscriptions:resume(id, params, opts) end

---@class luar.stripe.Refunds: luar.stripe.Resource
local Refunds = {}
---POST /v1/refunds/<id>/cancel (refunds that are still pending). ⏸
---@param id string
---@param params? table
---@param opts? luar.stripe.CallOptions
---@return luar.stripe.Object|nil object
---@return luar.stripe.Error|nil err
function Refunds:cancel(id, params, opts) end

return stripe
