---@meta
-- luar.http: server routes (declared while the scripts load) and the outbound client
-- (http.request, http.get/post/put/patch/delete/head, http.client), whose calls wait (⏸):
-- they yield the running handler, job or `luar run` script and never block the loop.

---@class luar.http
local http = {}

---@class luar.http.Request
---@field method string "GET", "POST", ...
---@field path string percent-decoded path, without the query
---@field query table<string, string> decoded query; a repeated key keeps its last value
---@field query_string string the raw query string ("" when none)
---@field headers table<string, string> lower-case names; repeated headers joined with ", "
---@field params table<string, string> `:name` segments and the `*name` splat of the route
---@field body string the whole request body ("" when none)
---@field id string the request id (X-Request-Id when valid, else generated)
---@field remote_addr string the peer's IP address
---@field route string the matched route pattern
---@field tls? { client_subject?: string } present when the request came over TLS
local Request = {}

---Decodes the body as JSON.
---@return any|nil value
---@return luar.Error|nil err kind "invalid" when the body is not valid JSON
function Request:json() end

---@class luar.http.Response
---@field status? integer default 200
---@field json? any encoded as the body, Content-Type application/json
---@field body? string the body as is (Content-Type text/plain; charset=utf-8 unless set)
---@field headers? table<string, string|number>

---@class luar.http.RateOptions
---@field limit string "N/s", "N/m", "N/h" or "N/d": a burst of N refilling continuously (GCRA), exact across processes
---@field key? "ip"|string|fun(req: luar.http.Request): string|number|nil "ip" (default), "header:Name" (by IP when absent), or a function (nil: not limited; it may wait)
---@field name? string label of luar_ratelimit_rejected_total and scope of the allowance (default: the route pattern)
---@field on_error? "allow"|"deny" when the backend cannot answer: let requests through (default, logged) or answer 503

---@class luar.http.RouteOptions
---@field rate? luar.http.RateOptions|string over the limit: 429 with Retry-After (whole seconds, rounded up) and {"error": …}; a string is { limit = … } keyed by IP
---@field require_client_cert? boolean 403 unless the request came over TLS with a client certificate the listener's client_ca verified

---Declares a route. `pattern` segments: literals, `:name` (one non-empty segment), and a
---trailing `*name` (the rest of the path). Literal segments beat `:params`, which beat a
---splat. `method` is an HTTP method or "*" for any. The handler returns a Response table, a
---string (200 text/plain) or nil (204). `opts` guards the route (docs/security.md): the
---client certificate is checked first, then the rate, then the handler runs.
---@param method string
---@param pattern string
---@param handler fun(req: luar.http.Request): luar.http.Response|string|nil
---@param opts? luar.http.RouteOptions
function http.route(method, pattern, handler, opts) end

---@class luar.http.RequestOptions
---@field method? string default "GET" (any case)
---@field url string absolute http:// or https:// URL
---@field headers? table<string, string|number|boolean> sent as given
---@field query? table<string, string|number|boolean|(string|number)[]> appended to the URL, percent-encoded, keys sorted; a list repeats the key
---@field json? any encoded as the body, Content-Type application/json unless set
---@field form? table<string, string|number|boolean|(string|number)[]> encoded as the body, Content-Type application/x-www-form-urlencoded unless set
---@field body? string the body as is (no Content-Type is invented). One of json, form, body.
---@field timeout? number|{connect?: number, total?: number} seconds; a number is the total (defaults: connect 10, total 30)
---@field max_body? integer response body cap in bytes (default 10 MiB); larger → err.kind "too_large"
---@field raise_for_status? boolean an answer of 400 or more becomes nil, err{kind="http", status, retry_after?}
---@field ca? string PEM file of the CAs to trust instead of the system's
---@field cert? string client certificate (PEM) for mTLS
---@field key? string private key (PEM) of `cert`
---@field proxy? string "http://host:port", "socks5://..."; the *_proxy environment is ignored
---@field verify? boolean false: do not verify the server's certificate (default true)
---@field retry? boolean|luar.RetryOptions default (or true): 3 attempts for idempotent methods (see docs/calling-apis.md); false: one attempt
---@field breaker? boolean|luar.BreakerOptions default: on, per host; false: off
---@field rate? string "N/s", "N/m", "N/h", "N/d": token bucket per client (per host for http.request)
---@field rate_key? string names the rate bucket: calls giving the same key share it (default: the client object, or the host for http.request)
---@field rate_max_wait? number seconds a caller may wait for its turn (default 30), then err.kind = "rate_limited"
---@field cache? false|luar.CacheOptions off unless given (false: off)
---@field fallback? fun(err: luar.Error): any called with the error when the call fails; its results are returned
---@field path? string Client:request only: joined to the client's base_url (same as `url`)

---@class luar.RetryOptions
---@field attempts? integer every attempt, the first included (default 3; 1 to 1000)
---@field backoff? number base of the exponential backoff in seconds (default 0.5)
---@field backoff_cap? number cap of the jitter window in seconds (default 30)
---@field on? integer[] statuses to retry (default 429, 500, 502, 503, 504; at most 16, each 100-599)
---@field max_retry_after? number longest Retry-After honoured (default 60); longer ends the retries

---@class luar.BreakerOptions
---@field failures? integer consecutive failures that open the breaker (default 5; 1 to 1000)
---@field reset? number seconds open before one probe is let through (default 30)

---@class luar.CacheOptions
---@field ttl? number seconds a response is fresh (0: revalidate every time)
---@field stale_if_error? number|boolean seconds past ttl a copy may answer when the upstream fails or its breaker is open (true: 86400)

---@class luar.http.ClientResponse
---@field status integer the HTTP status (an error status is a response, not an error)
---@field headers table<string, string> lower-case names; repeated headers joined with ", "
---@field body string
---@field cached boolean true when served from the response cache
local ClientResponse = {}

---Decodes the body as JSON.
---@return any|nil value
---@return luar.Error|nil err kind "invalid" when the body is not valid JSON
function ClientResponse:json() end

---Sends one request ⏸. Transport failures return nil, err with err.kind "timeout",
---"connect" (refused, DNS, reset), "tls", "too_large", "invalid" (bad URL or scheme), or
---"http" with raise_for_status. Misuse raises at once, naming the option ("http.request:
---option cache must be a table …"): a wrong type is never taken as a default.
---@param opts luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function http.request(opts) end

---`http.request` with method GET and `url` ⏸.
---@param url string
---@param opts? luar.http.RequestOptions without method and url
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function http.get(url, opts) end

---@param url string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function http.post(url, opts) end

---@param url string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function http.put(url, opts) end

---@param url string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function http.patch(url, opts) end

---@param url string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function http.delete(url, opts) end

---@param url string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function http.head(url, opts) end

---@class luar.http.ClientOptions
---@field base_url? string joined with each call's path (slashes handled); absolute URLs pass as is
---@field headers? table<string, string|number|boolean> sent with every call (a call's header of the same name, in any case, wins)
---@field auth? {bearer: string}|{basic: {[1]: string, [2]: string}|{user: string, pass?: string, password?: string}} sets the Authorization header
---@field timeout? number|{connect?: number, total?: number} seconds; a number is the total
---@field ca? string PEM file of the CAs to trust instead of the system's
---@field cert? string client certificate (PEM) for mTLS
---@field key? string private key (PEM) of `cert`
---@field proxy? string "http://host:port", "socks5://..."
---@field verify? boolean false: do not verify the server's certificate
---@field max_body? integer response body cap in bytes (default 10 MiB)
---@field raise_for_status? boolean an answer of 400 or more becomes nil, err{kind="http"}
---@field retry? boolean|luar.RetryOptions false: one attempt
---@field breaker? boolean|luar.BreakerOptions
---@field rate? string "N/s", "N/m", "N/h", "N/d": one bucket for this client object
---@field rate_key? string share the bucket with other clients giving the same key
---@field rate_max_wait? number seconds a call may wait for its turn (default 30)
---@field cache? false|luar.CacheOptions
---@field fallback? fun(err: luar.Error): any called with the error when a call fails

---@class luar.http.Client
---@field base_url? string
---@field headers table<string, string> headers sent with every call (auth included)
---@field defaults table the other options, applied to every call
local Client = {}

---Sends `opts` (its `url` or `path` joined to base_url) with the client's defaults ⏸.
---@param opts luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function Client:request(opts) end

---@param path string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function Client:get(path, opts) end

---@param path string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function Client:post(path, opts) end

---@param path string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function Client:put(path, opts) end

---@param path string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function Client:patch(path, opts) end

---@param path string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function Client:delete(path, opts) end

---@param path string
---@param opts? luar.http.RequestOptions
---@return luar.http.ClientResponse|nil res
---@return luar.Error|nil err
function Client:head(path, opts) end

---Makes a client: shared defaults, base URL and credentials for one API. Its options are
---checked here, as http.request checks them ("http.client: option breaker must be …").
---@param opts luar.http.ClientOptions
---@return luar.http.Client
function http.client(opts) end

return http
