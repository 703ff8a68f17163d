"""Lua handlers served by the real binary: routes, params, errors, budgets, the sandbox,
the access log, the built-in endpoints and configured limits."""
import json
import socket

from luar_e2e import Luar, main

APP = r'''
local http = require "luar.http"
local log = require "luar.log"
http.route("GET", "/users/:id", function(req)
  return { json = { id = req.params.id, q = req.query.q, ua = req.headers["user-agent"],
                    rid = req.id } }
end)
http.route("POST", "/echo", function(req)
  local body, err = req:json()
  if not body then return { status = 400, json = { error = err.message } } end
  log.info("echo", { n = body.n })
  return { status = 201, json = body, headers = { ["X-Kind"] = "echo" } }
end)
http.route("GET", "/boom", function(req)
  local t = nil
  return t.missing
end)
http.route("GET", "/spin", function(req) while true do end end)
http.route("GET", "/spin-pcall", function(req)
  pcall(function() while true do end end)
  return { json = { escaped = true } }
end)
http.route("GET", "/hog", function(req)
  local t = {}
  for i = 1, 1e6 do t[i] = string.rep("x", 1 << 20) .. i end
end)
http.route("GET", "/exec", function(req) return { json = { r = os.execute("true") } } end)
http.route("GET", "/exit", function(req) os.exit(3) end)
http.route("GET", "/popen", function(req) io.popen("ls") end)
http.route("GET", "/text", function(req) return "plain words" end)
'''

CONFIG = 'return { limits = { max_body = "2KiB", cpu_budget = 0.5, lua_memory = "64MiB" },' \
         ' reload = { watch = false } }\n'


def test_route_params_query_headers_and_request_id():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        status, headers, body = luar.request("GET", "/users/42?q=a%20b",
                                             headers={"User-Agent": "e2e",
                                                      "X-Request-Id": "abc-123"})
        assert status == 200, body
        assert json.loads(body) == {"id": "42", "q": "a b", "ua": "e2e", "rid": "abc-123"}
        assert headers["x-request-id"] == "abc-123"
        rec = luar.wait_log(lambda r: r.get("msg") == "request" and r.get("request_id") ==
                            "abc-123")
        assert rec["method"] == "GET" and rec["status"] == 200 and rec["path"] == "/users/42"
        assert "duration_ms" in rec and rec["bytes"] == len(body)
        status, headers, _ = luar.request("GET", "/text")
        assert status == 200 and headers["content-type"].startswith("text/plain")


def test_json_body_log_fields_and_invalid_json():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        status, headers, body = luar.request("POST", "/echo", body=b'{"n": 5}',
                                             headers={"Content-Type": "application/json"})
        assert status == 201 and json.loads(body) == {"n": 5}
        assert headers["x-kind"] == "echo"
        rec = luar.wait_log(lambda r: r.get("msg") == "echo")
        assert rec["n"] == 5 and rec["level"] == "info" and rec["request_id"]
        status, _, body = luar.request("POST", "/echo", body=b'{"n": ')
        assert status == 400 and "error" in json.loads(body)


def test_handler_error_is_500_with_request_id_and_logged_traceback():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        status, headers, body = luar.request("GET", "/boom")
        assert status == 500
        doc = json.loads(body)
        assert doc["error"] == "internal error" and doc["request_id"] == headers["x-request-id"]
        assert "missing" not in body.decode()
        rec = luar.wait_log(lambda r: r.get("level") == "error" and
                            r.get("request_id") == doc["request_id"] and "traceback" in r)
        assert "main.lua:" in rec["error"] and "stack traceback" in rec["traceback"]
        assert luar.get_json("/users/1")["id"] == "1"  # still serving


def test_cpu_budget_stops_endless_loops_even_under_pcall():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        for path in ("/spin", "/spin-pcall"):
            status, _, body = luar.request("GET", path, timeout=30)
            assert status == 500, (path, status, body)
        luar.wait_log(lambda r: "CPU budget" in json.dumps(r))
        assert luar.get_json("/users/2")["id"] == "2"


def test_memory_cap_fails_the_handler_not_the_process():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        status, _, _ = luar.request("GET", "/hog", timeout=60)
        assert status == 500
        luar.wait_log(lambda r: "memory" in json.dumps(r) and r.get("level") == "error")
        assert luar.get_json("/users/3")["id"] == "3"


def test_unsafe_functions_raise_clear_errors():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        for path, name in (("/exec", "os.execute"), ("/exit", "os.exit"),
                           ("/popen", "io.popen")):
            status, _, _ = luar.request("GET", path)
            assert status == 500, path
            luar.wait_log(lambda r: r.get("level") == "error" and name in r.get("error", ""))
        assert luar.proc.poll() is None


def test_not_found_and_method_not_allowed():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        status, _, body = luar.request("GET", "/nope")
        assert status == 404 and json.loads(body)["error"]
        status, headers, _ = luar.request("DELETE", "/echo")
        assert status == 405 and "POST" in headers.get("allow", "")


def test_builtin_endpoints_and_metrics():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        assert luar.get_json("/healthz")["status"] == "ok"
        assert luar.get_json("/readyz")["status"] == "ready"
        luar.request("GET", "/users/9")
        luar.request("GET", "/users/10")
        status, headers, body = luar.request("GET", "/metrics")
        text = body.decode()
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert ('luar_http_requests_total{route="/users/:id",method="GET",status="200"} 2'
                in text), text
        assert "luar_http_request_duration_seconds_bucket" in text
        assert 'luar_build_info{version="' in text


def test_configured_body_limit_is_413():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        status, _, body = luar.request("POST", "/echo", body=b"x" * 4096)
        assert status == 413 and b"2048" in body, body
        s = socket.create_connection(("127.0.0.1", luar.port), timeout=10)
        s.sendall(b"GARBAGE\r\n\r\n")
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 400"), data
        s.close()


if __name__ == "__main__":
    main([test_route_params_query_headers_and_request_id,
          test_json_body_log_fields_and_invalid_json,
          test_handler_error_is_500_with_request_id_and_logged_traceback,
          test_cpu_budget_stops_endless_loops_even_under_pcall,
          test_memory_cap_fails_the_handler_not_the_process,
          test_unsafe_functions_raise_clear_errors,
          test_not_found_and_method_not_allowed,
          test_builtin_endpoints_and_metrics,
          test_configured_body_limit_is_413])
