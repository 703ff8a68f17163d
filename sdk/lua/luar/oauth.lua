---@meta
-- luar.oauth: "connect your account" OAuth 2.0 with tokens that stay fresh. Providers are
-- declared while the scripts load (each gets GET /oauth/<name>/start?account=<id> and
-- GET /oauth/<name>/callback); tokens are stored encrypted under the secrets key in the
-- queue backend and refreshed once per account across coroutines, processes and
-- instances. Errors are nil, err with err.kind "oauth" and err.code (not_connected,
-- insufficient_scope, expired, invalid_grant, timeout, ...). See docs/oauth.md.

---@class luar.oauth
local oauth = {}

---@class luar.OAuthProviderOptions
---@field client_id string
---@field client_secret? string
---@field authorize_url? string without it, no routes (client credentials only)
---@field token_url string
---@field scopes? string[]|string
---@field pkce? boolean S256, default true
---@field extra_params? table<string, string> added to the authorization URL
---@field revoke_url? string RFC 7009 endpoint
---@field issuer? string OpenID Connect issuer (ID tokens verified; nonce sent)
---@field jwks_url? string default: discovered from the issuer
---@field redirect_uri? string default <public_url>/oauth/<name>/callback
---@field success_url? string redirect after connecting instead of the HTML page
---@field refresh_margin? number seconds before expiry a token is refreshed (60)
---@field auth? "post"|"basic" how the client authenticates at token_url ("post")
---@field start_guard? fun(req: table, account: string): boolean, string? who may start a connection

---A copy of the stored token record without the refresh token (which never leaves the
---sealed store); changing it changes nothing stored.
---@class luar.OAuthRecord
---@field access_token string
---@field token_type string "Bearer" unless the provider said otherwise
---@field expires_at number|nil unix seconds (nil: the provider gave no expires_in)
---@field obtained_at number unix seconds the token was obtained
---@field scopes string[] granted scopes
---@field id_claims table|nil verified ID-token claims
---@field provider string
---@field account string|nil nil for client credentials

---@class luar.OAuthTokenOptions
---@field scopes? string[] scopes the token must have been granted (else code "insufficient_scope")

---@class luar.OAuthClientCredentialsOptions
---@field scopes? string[] default: the provider's scopes
---@field audience? string sent as `audience` in the grant (Auth0 and others)

---@class luar.OAuthConnection
---@field provider string
---@field account string
---@field scopes string[]
---@field expires_at? number
---@field obtained_at number
---@field claims? table verified ID-token claims
---@field has_refresh_token boolean

---Declares a provider (while the scripts load). "google" and "github" are presets: give
---client_id and client_secret, the rest is filled in (your options win).
---@param name string letters, digits, '_' and '-'
---@param opts luar.OAuthProviderOptions
---@return luar.OAuthProviderOptions provider the options with the preset's filled in, and `name`
function oauth.provider(name, opts) end

---A valid access token of `account` at `provider`, refreshed first when it expires within
---refresh_margin (one refresh in flight per account everywhere), ⏸. With opts.scopes, each
---must have been granted (else code "insufficient_scope" naming the missing ones).
---@param provider string
---@param account string
---@param opts? luar.OAuthTokenOptions
---@return string|nil access_token
---@return luar.OAuthRecord|luar.Error record_or_err
function oauth.token(provider, account, opts) end

---An application token from the client-credentials grant, cached until it nears expiry, ⏸.
---@param provider string
---@param opts? luar.OAuthClientCredentialsOptions
---@return string|nil access_token
---@return luar.OAuthRecord|luar.Error record_or_err
function oauth.client_credentials(provider, opts) end

---Revokes the account's tokens at the provider (revoke_url, when it has one) and deletes
---them, ⏸. true when tokens were stored, false when there were none.
---@param provider string
---@param account string
---@return boolean|nil ok
---@return luar.Error? err
function oauth.revoke(provider, account) end

---What is stored for the account, without the tokens, ⏸; nil when not connected.
---@param provider string
---@param account string
---@return luar.OAuthConnection|nil
---@return luar.Error? err
function oauth.connection(provider, account) end

return oauth
