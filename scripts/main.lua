-- The example integration that `make run` serves on http://127.0.0.1:8080: the tour's
-- small routes below, then a payments back end in lib/ (scripts/README.md tells the story):
--   lib/payments.lua      Stripe webhooks → receipt and welcome-mail jobs, failure metrics
--   lib/receipts.lua      receipts stored to S3 by a job
--   lib/welcome.lua       the welcome mail through SendGrid, a job with retries
--   lib/github_users.lua  GET /github/users/:login: cached, rate limited, with a fallback
--   lib/reports.lua       the daily report at 09:00 (REPORT_TZ) and a cleanup every 6 h
-- Edit any file while it runs: Luar reloads it without dropping a request.
local http = require "luar.http"
local log = require "luar.log"
local metrics = require "luar.metrics"
local sentry = require "luar.sentry"
local time = require "luar.time"
local webhooks = require "luar.webhooks"
local greeting = require "lib.greeting"
local integrations = require "lib.integrations"

-- Sentry (plugins.sentry.dsn, from SENTRY_DSN): uncaught errors of routes and jobs and
-- every log.error line become events; this tag is on each of them.
sentry.set_tag("service", "luar-example")

require "lib.payments"
require "lib.github_users"
require "lib.reports"

integrations.announce(os.getenv, sentry.enabled())

local greetings = metrics.counter("example_greetings_total", "Greetings served, by language.",
                                  { "lang" })

-- GET /hello → {"message":"hello, world"}
http.route("GET", "/hello", function(req)
  return { json = { message = greeting.say("world", req.query.lang) } }
end)

-- GET /hello/:name?lang=pt → a greeting for that name
http.route("GET", "/hello/:name", function(req)
  local lang = req.query.lang or "en"
  greetings:inc(1, { lang = lang })
  log.info("greeted", { name = req.params.name, lang = lang })
  return { json = { message = greeting.say(req.params.name, lang) } }
end)

-- POST /echo with a JSON body → the same body back, with the time it took
http.route("POST", "/echo", function(req)
  local started = time.monotonic()
  local body, err = req:json()
  if not body then
    return { status = 400, json = { error = "invalid JSON: " .. err.message } }
  end
  return { json = { echo = body, took_ms = (time.monotonic() - started) * 1000 } }
end)

-- GET /slow?s=0.2 → waits without blocking anything else (the coroutine yields)
http.route("GET", "/slow", function(req)
  local s = math.min(tonumber(req.query.s) or 0.2, 5)
  time.sleep(s)
  return { json = { slept = s } }
end)

-- POST /hooks/demo: a Standard Webhooks route. Each delivery is verified and stored before
-- the 200; the handler then runs as a durable job (retried if it raises). Try it:
--   echo '{"type":"order.paid","data":{"id":42}}' > ev.json
--   ./build/luar webhook send --scheme standard --url http://127.0.0.1:8080/hooks/demo \
--       --secret whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1sdWFyLXRvdXI= ev.json
-- (a real route takes its secret from the environment or `luar.secrets`, never the code)
webhooks.route("/hooks/demo", {
  scheme = "standard",
  secret = os.getenv("DEMO_WEBHOOK_SECRET") or "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1sdWFyLXRvdXI=",
})
webhooks.on("/hooks/demo", "order.*", function(event, meta)
  log.info("order event", { id = meta.id, type = meta.type, order = event.data and event.data.id })
end)
