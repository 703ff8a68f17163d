-- The example's configuration: `make run`, and `luar test` / `luar check` run from this
-- folder, read it. Provider keys come from the environment (scripts/README.md lists the
-- variables). A provider whose key is unset is pointed at the local stand-in that
-- `make run` starts (tools/standins.py, fixed ports 12111-12115), with the stand-in's
-- test key: the example runs with no accounts, and specs stub these calls either way.
local function standin(key_var, url)
  if env(key_var, "") ~= "" then return nil end   -- the real provider (plugin default)
  return url
end
-- The variable's value, or the stand-in's when it is unset or empty.
local function key(var, standin_value)
  local v = env(var, "")
  if v ~= "" then return v end
  return standin_value
end

return {
  plugins = {
    dir = env("LUAR_PLUGIN_DIR", nil),   -- default: installed plugins, then ./build/plugins
    stripe = {
      api_key = key("STRIPE_API_KEY", "sk_test_luar_standin"),
      base_url = env("STRIPE_API_BASE", standin("STRIPE_API_KEY", "http://127.0.0.1:12111")),
    },
    sendgrid = {
      api_key = key("SENDGRID_API_KEY", "SG.luar-standin"),
      base_url = env("SENDGRID_API_BASE", standin("SENDGRID_API_KEY", "http://127.0.0.1:12112")),
    },
    github = {
      token = env("GITHUB_TOKEN", nil),   -- optional: 60 requests an hour without one
      base_url = env("GITHUB_API_BASE", standin("GITHUB_TOKEN", "http://127.0.0.1:12113")),
    },
    s3 = {
      access_key = key("AWS_ACCESS_KEY_ID", "luar-standin"),
      secret_key = key("AWS_SECRET_ACCESS_KEY", "luar-standin-secret"),
      session_token = env("AWS_SESSION_TOKEN", nil),
      region = env("AWS_REGION", "us-east-1"),
      endpoint = env("AWS_ENDPOINT_URL_S3", standin("AWS_ACCESS_KEY_ID", "http://127.0.0.1:12114")),
    },
    sentry = {   -- `make run` sets SENTRY_DSN to its stand-in when you have none
      dsn = env("SENTRY_DSN", nil),
      environment = env("LUAR_ENV", "development"),
    },
  },
}
