-- luar.oauth (docs/oauth.md): "connect your account" OAuth 2.0 with tokens that stay fresh.
--
-- Built on the host's own mechanisms: luar.http for every request to a provider, the
-- backend's durable key-value records (queue.h luar_queue_kv, through core.kv) for states,
-- tokens and refresh locks, so every process and instance sharing the backend sees them;
-- AES-256-GCM under the secrets key (core.seal/open, in C) for everything stored; libcjose
-- (core.verify_jws) for ID-token signatures; luar.events for oauth.connected.
--
-- Records in the backend (keys are opaque to it):
--   oauth:state:<state>          sealed {provider, account, verifier, nonce, redirect_uri,
--                                 issued_at}, taken (read and deleted) by the callback
--   oauth:used:<state>           a marker that the state was used: a replay is named so
--   oauth:token:<p>:<account>    sealed token record (aad: the key itself)
--   oauth:cc:<p>:<scopes>        sealed client-credentials token
--   oauth:lock:<key>             refresh lock: set-if-absent with a ttl, value = owner
--   oauth:fail:<key>             the lock holder's failure, for the callers that waited
local core = ...

local http = require "luar.http"
local json = require "luar.json"
local crypto = require "luar.crypto"
local events = require "luar.events"
local lerror = require "luar.error"
local log = require "luar.log"
local time = require "luar.time"

local M = {}

local STATE_TTL = 600     -- seconds a started authorization may take to come back
local LOCK_TTL = 30       -- seconds a refresh lock lives if its holder dies
local WAIT_LIMIT = 20     -- seconds a caller waits for another's refresh
local POLL = 0.05         -- seconds between looks while another refresh is in flight
local JWKS_TTL = 3600     -- seconds a fetched JWKS is trusted before it is fetched again
local LEEWAY = 60         -- seconds of clock skew allowed on exp/iat of an ID token

local PRESETS = {
    google = {
        authorize_url = "https://accounts.google.com/o/oauth2/v2/auth",
        token_url = "https://oauth2.googleapis.com/token",
        revoke_url = "https://oauth2.googleapis.com/revoke",
        issuer = "https://accounts.google.com",
        jwks_url = "https://www.googleapis.com/oauth2/v3/certs",
        scopes = { "openid", "email", "profile" },
        -- a refresh token is only issued with offline access, and again only on consent
        extra_params = { access_type = "offline", prompt = "consent" },
    },
    github = {
        authorize_url = "https://github.com/login/oauth/authorize",
        token_url = "https://github.com/login/oauth/access_token",
        scopes = { "read:user" },
    },
}

local providers = {}

local function oerr(code, message, extra)
    local e = { kind = "oauth", code = code, message = message }
    for k, v in pairs(extra or {}) do e[k] = v end
    return lerror.new(e)
end

-- ---- declaring providers --------------------------------------------------------------

local function check_url(name, field, v, required)
    if v == nil and not required then return end
    if type(v) ~= "string" or not v:match("^https?://[^%s]+$") then
        error(("oauth.provider(%q): %s must be an http(s) URL, got %s"):format(
            name, field, v == nil and "nothing" or tostring(v)), 3)
    end
end

local function scope_list(v, name)
    if v == nil then return {} end
    if type(v) == "string" then
        local out = {}
        for s in v:gmatch("%S+") do out[#out + 1] = s end
        return out
    end
    if type(v) ~= "table" then
        error(("oauth.provider(%q): scopes must be a list of strings"):format(name), 3)
    end
    return v
end

local start_route, callback_route -- defined below

function M.provider(name, opts)
    if type(name) ~= "string" or not name:match("^[%w_%-]+$") then
        error("oauth.provider: the name must be letters, digits, '_' or '-', got " ..
              tostring(name), 2)
    end
    if type(opts) ~= "table" then
        error(("oauth.provider(%q): expected an options table"):format(name), 2)
    end
    if providers[name] then error(("oauth.provider(%q): declared twice"):format(name), 2) end
    local p = {}
    for k, v in pairs(PRESETS[name] or {}) do p[k] = v end
    for k, v in pairs(opts) do p[k] = v end
    p.name = name
    check_url(name, "authorize_url", p.authorize_url, false)
    check_url(name, "token_url", p.token_url, true)
    check_url(name, "revoke_url", p.revoke_url, false)
    check_url(name, "jwks_url", p.jwks_url, false)
    check_url(name, "redirect_uri", p.redirect_uri, false)
    check_url(name, "success_url", p.success_url, false)
    if type(p.client_id) ~= "string" or p.client_id == "" then
        error(("oauth.provider(%q): client_id is required"):format(name), 2)
    end
    if p.client_secret ~= nil and type(p.client_secret) ~= "string" then
        error(("oauth.provider(%q): client_secret must be a string"):format(name), 2)
    end
    if p.auth ~= nil and p.auth ~= "post" and p.auth ~= "basic" then
        error(("oauth.provider(%q): auth must be \"post\" or \"basic\""):format(name), 2)
    end
    p.scopes = scope_list(p.scopes, name)
    if p.pkce == nil then p.pkce = true end
    p.refresh_margin = tonumber(p.refresh_margin) or 60
    p.jwks = nil
    providers[name] = p
    if p.authorize_url then
        local base = "/oauth/" .. name
        http.route("GET", base .. "/start", function(req) return start_route(p, req) end)
        http.route("GET", base .. "/callback", function(req) return callback_route(p, req) end)
    end
    return p
end

local function provider(name, level)
    local p = providers[name]
    if not p then
        error(("oauth: no provider %q (declare it with oauth.provider while the scripts load)")
              :format(tostring(name)), (level or 2) + 1)
    end
    return p
end

-- ---- records --------------------------------------------------------------------------

local function token_key(p, account) return "oauth:token:" .. p.name .. ":" .. account end

-- Reads and decrypts a record: value | nil (absent) | nil, err
local function load(key)
    local found, blob = core.kv("get", key)
    if found == nil then return nil, blob end
    if not found then return nil end
    local plain, err = core.open(blob, key)
    if not plain then return nil, err end
    return json.decode(plain)
end

local function save(key, rec, ttl)
    local blob, err = core.seal(json.encode(rec), key)
    if not blob then return nil, err end
    local ok, e = core.kv("put", key, blob, ttl or 0)
    if ok == nil then return nil, e end
    return true
end

local function split_scopes(s)
    local out = {}
    if type(s) == "string" then for w in s:gmatch("%S+") do out[#out + 1] = w end end
    return out
end

-- ---- talking to the token endpoint -----------------------------------------------------

local function client_auth(p, form, headers)
    if p.auth == "basic" and p.client_secret then
        headers["Authorization"] = "Basic " .. crypto.base64(p.client_id .. ":" .. p.client_secret)
    else
        form.client_id = p.client_id
        if p.client_secret then form.client_secret = p.client_secret end
    end
end

-- POSTs a grant to token_url: the decoded answer | nil, err (kind "oauth" with the
-- provider's error code when it answered one, else the transport's kind).
local function token_request(p, form)
    local headers = { Accept = "application/json" }
    client_auth(p, form, headers)
    -- retry = false: a grant must not be sent twice (a code is single-use; a refresh token
    -- may rotate), and a second refresh is exactly what the lock exists to prevent.
    local res, err = http.request { method = "POST", url = p.token_url, form = form,
                                    headers = headers, retry = false, timeout = 15 }
    if not res then return nil, err end
    local body = res:json()
    if res.status ~= 200 or type(body) ~= "table" or body.error or not body.access_token then
        local code = type(body) == "table" and type(body.error) == "string" and body.error or
                     ("http_" .. res.status)
        local desc = type(body) == "table" and body.error_description
        return nil, oerr(code, ("%s token endpoint refused the %s grant: %s%s"):format(
            p.name, form.grant_type, code, type(desc) == "string" and (" (" .. desc .. ")") or ""),
            { status = res.status, provider = p.name })
    end
    return body
end

-- A token record from a token endpoint answer (`prev`: the record it replaces).
local function record_of(body, prev, requested)
    local now = time.now()
    local rec = {
        access_token = body.access_token,
        token_type = body.token_type or "Bearer",
        refresh_token = body.refresh_token or (prev and prev.refresh_token),
        -- RFC 6749 §5.1: no scope in the answer means the scope requested was granted
        scopes = body.scope and split_scopes(body.scope) or (prev and prev.scopes) or requested
            or {},
        obtained_at = now,
    }
    local ttl = tonumber(body.expires_in)
    if ttl then rec.expires_at = now + ttl end
    if prev then rec.id_claims = prev.id_claims end
    return rec
end

-- What oauth.token and oauth.client_credentials hand to scripts: a copy of the record
-- without the refresh token (a script needs the access token; the refresh token stays in
-- the sealed store, used only here).
local function public(p, rec, account)
    local scopes = {}
    for i, s in ipairs(rec.scopes or {}) do scopes[i] = s end
    return { access_token = rec.access_token, token_type = rec.token_type,
             expires_at = rec.expires_at, obtained_at = rec.obtained_at, scopes = scopes,
             id_claims = rec.id_claims, provider = p.name, account = account }
end

local function fresh(p, rec)
    return rec.expires_at == nil or rec.expires_at - p.refresh_margin > time.now()
end

-- ---- one refresh in flight -------------------------------------------------------------

-- Runs fetch() under the backend lock of `key` unless another caller (any coroutine, any
-- process, any instance) holds it; they wait for the holder's result instead of asking
-- the provider themselves. `current()` reads the record; `usable(rec)` says it needs no
-- refresh. Returns the record | nil, err.
local function single_flight(key, current, usable, fetch)
    local lock, failkey = "oauth:lock:" .. key, "oauth:fail:" .. key
    local owner = crypto.hex(crypto.random(12))
    local began = time.now()
    local deadline = time.monotonic() + WAIT_LIMIT
    while true do
        local got, e = core.kv("add", lock, owner, LOCK_TTL)
        if got == nil then return nil, e end
        if got then
            -- someone may have finished a refresh between our read and the lock
            local rec, rerr = current()
            local result, ferr
            if rerr then
                ferr = rerr
            elseif rec and usable(rec) then
                result = rec
            else
                result, ferr = fetch(rec)
                if not result and lerror.is(ferr) and ferr.kind == "oauth" then
                    core.kv("put", failkey, json.encode({ at = time.now(), code = ferr.code,
                        message = ferr.message, status = ferr.status }), 10)
                end
            end
            core.kv("delete", lock, owner)
            return result, ferr
        end
        time.sleep(POLL)
        local rec = current()
        if rec and usable(rec) then return rec end
        local seen, f = core.kv("get", failkey)
        if seen then
            local fail = json.decode(f)
            if fail.at >= began then
                return nil, oerr(fail.code, fail.message, { status = fail.status })
            end
        end
        if time.monotonic() > deadline then
            return nil, oerr("timeout", ("waited %d s for another refresh of %s to finish")
                :format(WAIT_LIMIT, key))
        end
    end
end

-- ---- oauth.token ------------------------------------------------------------------------

local function missing_scopes(rec, wanted)
    if not wanted then return nil end
    local have = {}
    for _, s in ipairs(rec.scopes or {}) do have[s] = true end
    local missing = {}
    for _, s in ipairs(scope_list(wanted, "token")) do
        if not have[s] then missing[#missing + 1] = s end
    end
    return #missing > 0 and missing or nil
end

function M.token(name, account, opts)
    local p = provider(name)
    if type(account) ~= "string" or account == "" then
        error("oauth.token: account must be a non-empty string", 2)
    end
    local key = token_key(p, account)
    local rec, err = load(key)
    if err then return nil, err end
    if not rec then
        return nil, oerr("not_connected",
            ("account %s has not connected %s (send it to /oauth/%s/start?account=...)")
                :format(account, p.name, p.name), { provider = p.name, account = account })
    end
    local missing = missing_scopes(rec, opts and opts.scopes)
    if missing then
        return nil, oerr("insufficient_scope",
            ("scope %s was not granted by %s for account %s (granted: %s); connect again "
             .. "asking for it"):format(table.concat(missing, ", "), p.name, account,
                                        table.concat(rec.scopes or {}, " ")),
            { provider = p.name, account = account, missing = missing })
    end
    if fresh(p, rec) then return rec.access_token, public(p, rec, account) end
    if not rec.refresh_token then
        return nil, oerr("expired",
            ("the %s token of account %s expired and there is no refresh token; connect again")
                :format(p.name, account), { provider = p.name, account = account })
    end
    local out, ferr = single_flight(p.name .. ":" .. account,
        function() return load(key) end,
        function(r) return fresh(p, r) end,
        function(cur)
            cur = cur or rec
            local body, e = token_request(p, { grant_type = "refresh_token",
                                               refresh_token = cur.refresh_token })
            if not body then
                if lerror.is(e) and e.kind == "oauth" then
                    e.provider, e.account = p.name, account
                end
                return nil, e
            end
            local nrec = record_of(body, cur)
            local ok, serr = save(key, nrec)
            if not ok then return nil, serr end
            log.info("oauth token refreshed", { provider = p.name, account = account })
            return nrec
        end)
    if not out then return nil, ferr end
    return out.access_token, public(p, out, account)
end

-- ---- client credentials -----------------------------------------------------------------

function M.client_credentials(name, opts)
    local p = provider(name)
    local scopes = scope_list(opts and opts.scopes or p.scopes, name)
    local key = "oauth:cc:" .. p.name .. ":" .. table.concat(scopes, " ")
    local function usable(r) return fresh(p, r) end
    local rec, err = load(key)
    if err then return nil, err end
    if rec and usable(rec) then return rec.access_token, public(p, rec) end
    local out, ferr = single_flight("cc:" .. p.name .. ":" .. table.concat(scopes, " "),
        function() return load(key) end, usable,
        function()
            local form = { grant_type = "client_credentials" }
            if #scopes > 0 then form.scope = table.concat(scopes, " ") end
            if opts and opts.audience then form.audience = opts.audience end
            local body, e = token_request(p, form)
            if not body then return nil, e end
            local nrec = record_of(body, nil, scopes)
            nrec.refresh_token = nil
            local ttl = nrec.expires_at and (nrec.expires_at - time.now()) or 0
            local ok, serr = save(key, nrec, ttl > 0 and ttl or 0)
            if not ok then return nil, serr end
            return nrec
        end)
    if not out then return nil, ferr end
    return out.access_token, public(p, out)
end

-- ---- revoke -----------------------------------------------------------------------------

function M.revoke(name, account)
    local p = provider(name)
    local key = token_key(p, account)
    local rec, err = load(key)
    if err then return nil, err end
    if rec and p.revoke_url then
        local token = rec.refresh_token or rec.access_token
        local form = { token = token,
                       token_type_hint = rec.refresh_token and "refresh_token" or "access_token" }
        local headers = { Accept = "application/json" }
        client_auth(p, form, headers)
        local res, e = http.request { method = "POST", url = p.revoke_url, form = form,
                                      headers = headers, timeout = 15 }
        if not res then return nil, e end
        if res.status ~= 200 then
            return nil, oerr("revoke_failed",
                ("%s revocation endpoint answered %d"):format(p.name, res.status),
                { status = res.status, provider = p.name, account = account })
        end
    end
    local ok, derr = core.kv("delete", key)
    if ok == nil then return nil, derr end
    return rec ~= nil
end

-- The stored connection (scopes, expiry, ID-token claims) without the tokens, or nil.
function M.connection(name, account)
    local p = provider(name)
    local rec, err = load(token_key(p, account))
    if not rec then return nil, err end
    return { provider = p.name, account = account, scopes = rec.scopes, expires_at = rec.expires_at,
             obtained_at = rec.obtained_at, claims = rec.id_claims,
             has_refresh_token = rec.refresh_token ~= nil }
end

-- ---- OpenID Connect ---------------------------------------------------------------------

local function fetch_json(url)
    local res, err = http.get(url, { headers = { Accept = "application/json" }, timeout = 10 })
    if not res then return nil, err end
    if res.status ~= 200 then
        return nil, oerr("jwks_unavailable", ("%s answered %d"):format(url, res.status))
    end
    return res.body
end

local function jwks_of(p, force)
    local now = time.monotonic()
    if p.jwks and not force and now - p.jwks.at < JWKS_TTL then return p.jwks.body end
    if not p.jwks_url and p.issuer then
        local doc, err = fetch_json(p.issuer:gsub("/+$", "") .. "/.well-known/openid-configuration")
        if not doc then return nil, err end
        local meta = json.decode(doc)
        if type(meta) ~= "table" or type(meta.jwks_uri) ~= "string" then
            return nil, oerr("invalid_id_token", p.issuer .. " discovery document has no jwks_uri")
        end
        p.jwks_url = meta.jwks_uri
    end
    local body, err = fetch_json(p.jwks_url)
    if not body then return nil, err end
    p.jwks = { body = body, at = now }
    return body
end

-- Verifies an ID token: signature (libcjose, against the provider's JWKS), iss, aud, azp,
-- exp, iat and nonce. Returns the claims | nil, err.
local function verify_id_token(p, id_token, nonce)
    local function refuse(why)
        return nil, oerr("invalid_id_token", ("%s ID token refused: %s"):format(p.name, why),
            { provider = p.name })
    end
    local jwks, err = jwks_of(p)
    if not jwks then return nil, err end
    local claims_json, why, stale = core.verify_jws(id_token, jwks)
    if not claims_json and stale and time.monotonic() - p.jwks.at > 5 then
        -- an unknown kid: the provider may have rotated its keys since we fetched them
        jwks, err = jwks_of(p, true)
        if not jwks then return nil, err end
        claims_json, why = core.verify_jws(id_token, jwks)
    end
    if not claims_json then return refuse(why) end
    local claims = json.decode(claims_json)
    if type(claims) ~= "table" then return refuse("the payload is not a JSON object") end
    if p.issuer and claims.iss ~= p.issuer then
        return refuse(("iss is %s, expected %s"):format(tostring(claims.iss), p.issuer))
    end
    local aud = claims.aud
    local auds = type(aud) == "table" and aud or { aud }
    local ours = false
    for _, a in ipairs(auds) do if a == p.client_id then ours = true end end
    if not ours then
        return refuse(("aud is %s, not this client (%s)"):format(
            type(aud) == "table" and table.concat(aud, ",") or tostring(aud), p.client_id))
    end
    if #auds > 1 and claims.azp ~= nil and claims.azp ~= p.client_id then
        return refuse("azp is " .. tostring(claims.azp) .. ", not this client")
    end
    local now = time.now()
    if type(claims.exp) ~= "number" or claims.exp + LEEWAY < now then
        return refuse("expired (exp " .. tostring(claims.exp) .. ")")
    end
    if type(claims.iat) == "number" and claims.iat - LEEWAY > now then
        return refuse("issued in the future (iat " .. claims.iat .. ")")
    end
    if nonce and claims.nonce ~= nonce then
        return refuse("nonce does not match the one sent with the authorization request")
    end
    return claims
end

-- ---- the routes -------------------------------------------------------------------------

local function html_escape(s)
    return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                             ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function page(status, title, text)
    return { status = status,
             headers = { ["Content-Type"] = "text/html; charset=utf-8",
                         ["Cache-Control"] = "no-store" },
             body = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>%s</title></head>"
                     .. "<body><h1>%s</h1><p>%s</p></body></html>\n")
                 :format(html_escape(title), html_escape(title), html_escape(text)) }
end

local function redirect_uri_of(p, req)
    if p.redirect_uri then return p.redirect_uri end
    local base = core.public_url()
    if not base then
        -- no public_url: the address this request came to (fine on a laptop, wrong behind
        -- a proxy that rewrites Host; set public_url there)
        base = (req.tls and "https://" or "http://") .. (req.headers.host or "localhost")
    end
    return base .. "/oauth/" .. p.name .. "/callback"
end

local function query_string(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
        local v = tostring(t[k]):gsub("[^%w%-%._~]",
                                      function(c) return ("%%%02X"):format(c:byte()) end)
        parts[#parts + 1] = k .. "=" .. v
    end
    return table.concat(parts, "&")
end

function start_route(p, req)
    local account = req.query.account
    if type(account) ~= "string" or account == "" then
        return page(400, "Missing account", "The start URL needs ?account=<id>.")
    end
    if p.start_guard then
        local ok, why = p.start_guard(req, account)
        if not ok then
            return page(403, "Not allowed", why or "This connection may not be started here.")
        end
    end
    local state = crypto.base64url(crypto.random(32))
    local rec = { provider = p.name, account = account, issued_at = time.now(),
                  redirect_uri = redirect_uri_of(p, req) }
    local params = { response_type = "code", client_id = p.client_id,
                     redirect_uri = rec.redirect_uri, state = state }
    if #p.scopes > 0 then params.scope = table.concat(p.scopes, " ") end
    rec.scopes = p.scopes
    if p.pkce then
        rec.verifier = crypto.base64url(crypto.random(32))
        params.code_challenge = crypto.base64url(crypto.digest("sha256", rec.verifier))
        params.code_challenge_method = "S256"
    end
    if p.issuer or p.jwks_url then
        rec.nonce = crypto.base64url(crypto.random(16))
        params.nonce = rec.nonce
    end
    for k, v in pairs(p.extra_params or {}) do params[k] = v end
    local ok, err = save("oauth:state:" .. state, rec, STATE_TTL)
    if not ok then
        log.error("oauth start failed", { provider = p.name, error = tostring(err) })
        return page(503, "Try again",
                    "The connection could not be started: " .. (err.message or tostring(err)))
    end
    local sep = p.authorize_url:find("?", 1, true) and "&" or "?"
    return { status = 302, headers = { Location = p.authorize_url .. sep .. query_string(params),
                                       ["Cache-Control"] = "no-store" } }
end

function callback_route(p, req)
    local q = req.query
    local state = q.state
    if type(state) ~= "string" or state == "" then
        return page(400, "Invalid callback", "The callback has no state parameter.")
    end
    local key = "oauth:state:" .. state
    local found, blob = core.kv("take", key)
    if found == nil then return page(503, "Try again", "The backend did not answer.") end
    if not found then
        local used = core.kv("get", "oauth:used:" .. state)
        if used then
            return page(400, "Invalid callback",
                        "This state was already used: a callback is accepted once.")
        end
        return page(400, "Invalid callback",
                    "Unknown or expired state: start the connection again.")
    end
    core.kv("put", "oauth:used:" .. state, "1", 24 * 3600)
    local plain, open_err = core.open(blob, key)
    local rec = plain and json.decode(plain)
    if not rec then
        return page(400, "Invalid callback", "The state cannot be read: " .. tostring(open_err))
    end
    if rec.provider ~= p.name then
        return page(400, "Invalid callback", ("This state was issued for provider %s, not %s.")
            :format(rec.provider, p.name))
    end
    if time.now() - rec.issued_at > STATE_TTL then
        return page(400, "Invalid callback", "The state expired: start the connection again.")
    end
    if q.error then
        return page(400, "Not connected", ("%s answered %s%s"):format(p.name, q.error,
            q.error_description and (": " .. q.error_description) or ""))
    end
    if type(q.code) ~= "string" or q.code == "" then
        return page(400, "Invalid callback", "The callback has no code parameter.")
    end
    local form = { grant_type = "authorization_code", code = q.code,
                   redirect_uri = rec.redirect_uri }
    if rec.verifier then form.code_verifier = rec.verifier end
    local body, err = token_request(p, form)
    if not body then
        log.warn("oauth code exchange failed", { provider = p.name, account = rec.account,
                                                 error = tostring(err) })
        return page(lerror.is(err) and err.kind == "oauth" and 400 or 502, "Not connected",
                    "The code could not be exchanged: " .. (err.message or tostring(err)))
    end
    local tok = record_of(body, nil, rec.scopes)
    if body.id_token and (p.issuer or p.jwks_url) then
        local claims, verr = verify_id_token(p, body.id_token, rec.nonce)
        if not claims then
            log.warn("oauth id token refused", { provider = p.name, account = rec.account,
                                                 error = tostring(verr) })
            return page(400, "Not connected", verr.message or tostring(verr))
        end
        tok.id_claims = claims
    end
    local ok, serr = save(token_key(p, rec.account), tok)
    if not ok then
        return page(503, "Try again",
                    "The tokens could not be stored: " .. (serr.message or tostring(serr)))
    end
    local n, perr = events.publish("oauth.connected", {
        provider = p.name, account = rec.account, scopes = tok.scopes,
        expires_at = tok.expires_at })
    if not n then log.warn("oauth.connected not published", { error = tostring(perr) }) end
    log.info("oauth connected", { provider = p.name, account = rec.account })
    if p.success_url then
        local sep = p.success_url:find("?", 1, true) and "&" or "?"
        return { status = 302, headers = { Location = p.success_url .. sep ..
            query_string({ provider = p.name, account = rec.account }) } }
    end
    return page(200, "Connected", ("Account %s is connected to %s. You can close this page.")
        :format(rec.account, p.name))
end

return M
