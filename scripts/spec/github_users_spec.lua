-- GET /github/users/:login (lib/github_users.lua): GitHub stubbed; the client's cache,
-- retries, breaker and rate limit run for real. They live as long as the process, so
-- each test looks up its own login, and the rate-limit test comes last.
local t = require "luar.test"

local function user(login)
  return { login = login, id = 7, name = "The " .. login, avatar_url = "https://a/" .. login,
           html_url = "https://github.com/" .. login, public_repos = 3, followers = 5 }
end

local function get(login)
  return t.request("GET", "/github/users/" .. login)
end

describe("GET /github/users/:login", function()
  it("answers GitHub's profile, then the cached copy", function()
    t.http.stub("GET", "*/users/ada", { status = 200, json = user("ada"),
                                        headers = { ETag = '"v1"' } })
    local res = get("ada")
    assert.are.equal(200, res.status)
    local body = res:json()
    assert.are.equal("github", body.source)
    assert.are.equal("The ada", body.name)
    assert.are.equal(3, body.public_repos)
    assert.are.equal("cache", get("ada"):json().source)
    assert.are.equal(1, #t.http.requests("*/users/ada"))
  end)

  it("sends GitHub's required headers", function()
    t.http.stub("GET", "*/users/hdr", { status = 200, json = user("hdr") })
    get("hdr")
    local req = t.http.requests("*/users/hdr")[1]
    assert.are.equal("application/vnd.github+json", req.headers["accept"])
    assert.truthy(req.headers["user-agent"])
  end)

  it("passes a 404 on", function()
    t.http.stub("GET", "*/users/no-such-user", { status = 404, json = { message = "Not Found" } })
    local res = get("no-such-user")
    assert.are.equal(404, res.status)
    assert.matches("no GitHub user", res:json().error)
  end)

  it("refuses what cannot be a login, without asking GitHub", function()
    assert.are.equal(400, get("-dash").status)
    assert.are.equal(400, get(string.rep("a", 40)).status)
    assert.are.equal(0, #t.http.requests())
  end)

  it("answers the fallback profile when GitHub fails", function()
    t.http.stub("GET", "*/users/grace", { status = 503, body = "unavailable" })
    local res = get("grace")
    assert.are.equal(200, res.status)
    local body = res:json()
    assert.are.equal("fallback", body.source)
    assert.are.equal("grace", body.login)
    assert.are.equal("https://github.com/grace", body.html_url)
    assert.truthy(res.headers["x-fallback"])
    assert.are.equal(2, #t.http.requests("*/users/grace"))   -- one retry of the 5xx
    assert.are.equal(1, #t.logs({ msg = "github lookup failed, answering the fallback",
                                  login = "grace" }))
  end)

  it("answers a stale copy when GitHub fails after the cache expired", function()
    t.http.stub("GET", "*/users/linus", { { status = 200, json = user("linus") },
                                          { status = 502, body = "bad gateway" } })
    assert.are.equal("github", get("linus"):json().source)
    t.clock.advance(301)   -- past the 5 minutes of freshness
    local body = get("linus"):json()
    assert.are.equal("cache", body.source)
    assert.are.equal("The linus", body.name)
  end)

  it("answers the fallback, without waiting, once over GitHub's quota", function()
    t.http.stub("GET", "*/users/*", function(req)
      return { status = 200, json = user(req.url:match("/users/([^/?]+)")) }
    end)
    local res
    for i = 1, 70 do   -- the bucket holds 60 (GitHub's unauthenticated hour)
      res = get("quota" .. i)
      if res:json().source == "fallback" then break end
    end
    assert.are.equal("fallback", res:json().source)
    assert.are.equal("rate_limited", res.headers["x-fallback"])
  end)
end)
