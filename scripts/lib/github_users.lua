-- GET /github/users/:login → a GitHub profile, through the github plugin's client with
-- luar.http's protections: a response cache (fresh 5 min; stale copies answer for a day
-- when GitHub fails), a token bucket under GitHub's hourly quota, a circuit breaker and a
-- retry of 5xx. When all of that still yields nothing, a default profile answers, marked
-- so the caller knows (`"source": "fallback"`): a lookup never turns into a 500.
local github = require "luar.github"
local http = require "luar.http"
local log = require "luar.log"
local metrics = require "luar.metrics"
local settings = require "lib.settings"

local M = {}

local lookups = metrics.counter("example_github_lookups_total",
                                "GitHub user lookups, by where the answer came from.",
                                { "source" })

local client
local function api()
  client = client or github.client{
    timeout = 5,
    retry = { attempts = 2, backoff = 0.2, on = { 500, 502, 503, 504 } },
    breaker = { failures = 5, reset = 30 },
    rate = settings.github_rate, rate_max_wait = 1,   -- over quota: the fallback, at once
    cache = { ttl = 300, stale_if_error = 86400 },
    max_wait = 2,   -- GitHub's own "come back later" is not worth more than this
  }
  return client
end

local function profile(u, source)
  return { login = u.login, name = u.name, avatar_url = u.avatar_url, html_url = u.html_url,
           public_repos = u.public_repos, followers = u.followers, source = source }
end

function M.fallback(login)
  return { login = login, name = nil, html_url = "https://github.com/" .. login,
           avatar_url = "https://github.com/identicons/" .. login .. ".png",
           source = "fallback" }
end

http.route("GET", "/github/users/:login", function(req)
  local login = req.params.login
  -- GitHub logins: 1-39 letters, digits or single hyphens.
  if #login > 39 or not login:match("^%w[%w-]*$") then
    return { status = 400, json = { error = "not a GitHub login: " .. login } }
  end
  local user, res = api():get("users/" .. login)
  if user then
    local source = res.cached and "cache" or "github"
    lookups:inc(1, { source = source })
    return { json = profile(user, source) }
  end
  local err = res
  if err.status == 404 then
    lookups:inc(1, { source = "not_found" })
    return { status = 404, json = { error = "no GitHub user " .. login } }
  end
  lookups:inc(1, { source = "fallback" })
  log.warn("github lookup failed, answering the fallback",
           { login = login, kind = err.kind, status = err.status })
  return { headers = { ["X-Fallback"] = err.kind }, json = M.fallback(login) }
end)

return M
