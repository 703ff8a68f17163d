-- The example's configuration, read by `make run` and by `luar test`, `luar check`,
-- `luar webhook send` … run from this folder. Provider keys come from the environment
-- (scripts/README.md lists the variables). A provider whose key is unset gets the local
-- stand-in `make run` starts (tools/standins.py, ports 12111-12115) and the stand-in's
-- test key, so the example runs with no accounts; specs stub these calls either way.

-- The variable's value, or `default` when it is unset or empty.
local function var(name, default)
  local v = env(name, "")
  if v ~= "" then return v end
  return default
end

-- The stand-in's URL while `key_var` is unset; else nil: the plugin's default, the real API.
local function standin(key_var, url)
  if var(key_var) then return nil end
  return url
end

return {
  plugins = {
    dir = var("LUAR_PLUGIN_DIR"),   -- default: the installed plugins, then ./build/plugins
    stripe = {
      api_key = var("STRIPE_API_KEY", "sk_test_luar_standin"),
      base_url = var("STRIPE_API_BASE", standin("STRIPE_API_KEY", "http://127.0.0.1:12111")),
    },
    sendgrid = {
      api_key = var("SENDGRID_API_KEY", "SG.luar-standin"),
      base_url = var("SENDGRID_API_BASE", standin("SENDGRID_API_KEY", "http://127.0.0.1:12112")),
    },
    github = {
      token = var("GITHUB_TOKEN"),   -- optional: GitHub allows 60 requests an hour without
      base_url = var("GITHUB_API_BASE", standin("GITHUB_TOKEN", "http://127.0.0.1:12113")),
    },
    s3 = {
      access_key = var("AWS_ACCESS_KEY_ID", "luar-standin"),
      secret_key = var("AWS_SECRET_ACCESS_KEY", "luar-standin-secret"),
      session_token = var("AWS_SESSION_TOKEN"),
      region = var("AWS_REGION", "us-east-1"),
      endpoint = var("AWS_ENDPOINT_URL_S3", standin("AWS_ACCESS_KEY_ID", "http://127.0.0.1:12114")),
    },
    sentry = {   -- no stand-in default: `make run` sets SENTRY_DSN to its own when unset
      dsn = var("SENTRY_DSN"),
      environment = var("LUAR_ENV", "development"),
    },
  },
}
