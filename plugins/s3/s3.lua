-- luar.s3: the S3 client (embedded in s3.so, run by its open() with the C core as `...`).
-- Single requests go through luar.http (retries of idempotent calls, breakers, metrics);
-- the parts of a multipart upload, which travel together, through core.start/wait_any
-- (luar.http waits for one answer at a time). See README.md.
local core = ...
local http = require "luar.http"
local time = require "luar.time"

local s3 = { version = "0.1.0" }

local MiB = 1024 * 1024
local MIN_PART = 5 * MiB          -- S3's smallest part (but the last)
local MAX_PARTS = 10000           -- S3's most parts per upload
local DEFAULT_PART = 8 * MiB
local DEFAULT_CONCURRENCY = 4
local PART_ATTEMPTS = 3

-- ---- errors -------------------------------------------------------------------------------

-- The one error shape of SPEC §4 (luar.error): tostring(err) reads like every module's.
local lerror = require "luar.error"

local function fail(kind, message, fields)
  local e = fields or {}
  e.kind, e.message = kind, message
  return nil, lerror.new(e)
end

-- the codes S3 implies when it sends no body (HEAD)
local STATUS_CODES = {
  [301] = "PermanentRedirect", [304] = "NotModified", [400] = "BadRequest",
  [403] = "Forbidden", [404] = "NotFound", [405] = "MethodNotAllowed",
  [409] = "Conflict", [412] = "PreconditionFailed", [416] = "InvalidRange",
  [500] = "InternalError", [503] = "SlowDown",
}

local HINTS = {
  SignatureDoesNotMatch = " (check the secret key: the server computed another signature)",
  InvalidAccessKeyId = " (the access key is unknown to the server)",
  RequestTimeTooSkewed = " (the local clock is too far from the server's)",
  AuthorizationHeaderMalformed = " (check the region)",
}

-- ---- a small XML reading: S3's answers are flat enough for patterns ------------------------

local ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'" }

local function unxml(s)
  return (s:gsub("&(#?x?)(%w+);", function(kind, v)
    if kind == "" then return ENTITIES[v] end
    local n = tonumber(v, kind == "#x" and 16 or 10)
    return n and utf8.char(n) or nil
  end))
end

local function tag(xml, name)
  local v = xml:match("<" .. name .. ">(.-)</" .. name .. ">")
  if v then return unxml(v) end
  if xml:find("<" .. name .. "%s*/>") then return "" end
  return nil
end

local function xml_escape(s)
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                ['"'] = "&quot;", ["'"] = "&apos;" }))
end

-- err.code / err.message / err.request_id from S3's <Error> body (or the status alone)
local function response_error(res, op, target)
  local body = res.body or ""
  local code = tag(body, "Code") or STATUS_CODES[res.status] or ("HTTP" .. tostring(res.status))
  local msg = tag(body, "Message")
  local rid = tag(body, "RequestId") or res.headers["x-amz-request-id"]
  local text = ("s3.%s %s: %s (HTTP %d)%s%s"):format(op, target, code, res.status,
    msg and (": " .. msg) or "", HINTS[code] or "")
  return fail("s3", text, { status = res.status, code = code, request_id = rid,
                            s3_message = msg, operation = op })
end

-- ---- addressing ----------------------------------------------------------------------------

local function parse_endpoint(url)
  local scheme, rest = tostring(url):match("^(https?)://(.+)$")
  if not scheme then error("s3.client: endpoint must be an http:// or https:// URL, got " .. tostring(url), 3) end
  local hostport, base = rest:match("^([^/]+)(.*)$")
  base = (base or ""):gsub("/+$", "")
  -- the Host header curl sends leaves out a default port: sign the same
  if (scheme == "http" and hostport:match(":80$")) or (scheme == "https" and hostport:match(":443$")) then
    hostport = hostport:gsub(":%d+$", "")
  end
  return scheme, hostport, base
end

local function sorted_query(q)
  if not q then return nil, "" end
  local keys, out = {}, {}
  for k, v in pairs(q) do
    if v ~= nil and v ~= false then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local strs = {}
  for _, k in ipairs(keys) do
    local v = q[k] == true and "" or tostring(q[k])
    strs[k] = v
    out[#out + 1] = core.uri_encode(k) .. "=" .. core.uri_encode(v)
  end
  return strs, table.concat(out, "&")
end

local Client = {}
Client.__index = Client

-- host, raw path and URL prefix (scheme://host) of bucket/key
function Client:_target(bucket, key)
  local path
  local host = self._host
  if bucket == nil then
    path = self._base .. "/"
  elseif self.path_style or bucket:find(".", 1, true) then
    path = self._base .. "/" .. bucket .. (key and ("/" .. key) or "")
  else
    host = bucket .. "." .. host
    path = self._base .. "/" .. (key or "")
  end
  return host, path
end

local function check_name(o, field, fn)
  local v = o[field]
  if type(v) ~= "string" or v == "" then
    error(("s3.%s: %s must be a non-empty string"):format(fn, field), 3)
  end
  return v
end

-- Signs and prepares one request: returns url, headers (body and payload hash given).
function Client:_prepare(r)
  local host, path = self:_target(r.bucket, r.key)
  local headers = {}
  for k, v in pairs(r.headers or {}) do headers[k:lower()] = tostring(v) end
  local strs, qs = sorted_query(r.query)
  local phash = r.payload_hash or core.sha256_hex(r.body or "")
  local auth, amz_date = core.sign(self._creds, {
    method = r.method, host = host, path = path, query = strs, headers = headers,
    payload_hash = phash, region = self.region,
  })
  headers["authorization"] = auth
  headers["x-amz-date"] = amz_date
  headers["x-amz-content-sha256"] = phash
  if self._token then headers["x-amz-security-token"] = self._token end
  local url = self._scheme .. "://" .. host .. core.uri_encode(path, true) .. (qs ~= "" and ("?" .. qs) or "")
  return url, headers
end

local function target_name(r)
  if r.key then return r.bucket .. "/" .. r.key end
  return r.bucket or "(service)"
end

-- One call through luar.http. Statuses of 300 and more become S3 errors.
function Client:_request(op, r)
  local url, headers = self:_prepare(r)
  local res, err = http.request {
    method = r.method, url = url, headers = headers, body = r.body,
    timeout = self.timeout, max_body = r.max_body, retry = self.retry,
  }
  if not res then
    err.operation = err.operation or op
    return nil, err
  end
  if res.status >= 300 then return response_error(res, op, target_name(r)) end
  return res
end

-- ---- the client ------------------------------------------------------------------------------

-- where credentials come from, in order: the call's options, plugins.s3, AWS_* variables;
-- the token always comes from the same place as the keys
local function credentials(opts)
  if opts.access_key or opts.secret_key then
    return opts.access_key, opts.secret_key, opts.session_token
  end
  if core.config("access_key") then
    return core.config("access_key"), core.config("secret_key"), core.config("session_token")
  end
  return core.env("AWS_ACCESS_KEY_ID"), core.env("AWS_SECRET_ACCESS_KEY"), core.env("AWS_SESSION_TOKEN")
end

local function setting(opts, key, ...)
  if opts[key] ~= nil then return opts[key] end
  local v = core.config(key)
  if v ~= nil then return v end
  for _, name in ipairs { ... } do
    v = core.env(name)
    if v then return v end
  end
  return nil
end

function s3.client(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("s3.client: options must be a table", 2) end
  local ak, sk, token = credentials(opts)
  if type(ak) ~= "string" or ak == "" or type(sk) ~= "string" or sk == "" then
    error("s3.client: no credentials (give access_key and secret_key, set plugins.s3.access_key/secret_key, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)", 2)
  end
  local region = setting(opts, "region", "AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
  local endpoint = setting(opts, "endpoint", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
  local path_style = opts.path_style
  if path_style == nil then
    local cfg = core.config("path_style")
    if cfg ~= nil then path_style = cfg == "true" else path_style = endpoint ~= nil end
  end
  endpoint = endpoint or ("https://s3." .. region .. ".amazonaws.com")
  local scheme, host, base = parse_endpoint(endpoint)
  local self = setmetatable({
    region = region, endpoint = endpoint, path_style = path_style and true or false,
    bucket = opts.bucket, timeout = opts.timeout, retry = opts.retry,
    part_size = opts.part_size or DEFAULT_PART,
    multipart_threshold = opts.multipart_threshold or opts.part_size or DEFAULT_PART,
    concurrency = opts.concurrency or DEFAULT_CONCURRENCY,
    _scheme = scheme, _host = host, _base = base,
    _creds = core.credentials(ak, sk, token), _token = (token ~= "" and token) or nil,
  }, Client)
  return self
end

-- The call's bucket, else the client's. The caller's table is only read: a table reused
-- with another client must get that client's bucket.
local function bucket_of(self, o, fn)
  return check_name({ bucket = o.bucket or self.bucket }, "bucket", fn)
end

-- request headers of an object being written
local function object_headers(o)
  local h = {}
  for k, v in pairs(o.headers or {}) do h[k:lower()] = tostring(v) end
  if o.content_type then h["content-type"] = o.content_type end
  if o.cache_control then h["cache-control"] = o.cache_control end
  if o.content_disposition then h["content-disposition"] = o.content_disposition end
  if o.content_encoding then h["content-encoding"] = o.content_encoding end
  if o.storage_class then h["x-amz-storage-class"] = o.storage_class end
  if o.acl then h["x-amz-acl"] = o.acl end
  if o.sse then h["x-amz-server-side-encryption"] = o.sse end
  if o.sse_kms_key_id then h["x-amz-server-side-encryption-aws-kms-key-id"] = o.sse_kms_key_id end
  for k, v in pairs(o.metadata or {}) do h["x-amz-meta-" .. tostring(k):lower()] = tostring(v) end
  return h
end

-- what a GET or HEAD says about an object
local function object_info(res)
  local h = res.headers
  local meta = {}
  for k, v in pairs(h) do
    local name = k:match("^x%-amz%-meta%-(.+)$")
    if name then meta[name] = v end
  end
  return {
    status = res.status,
    headers = h,
    content_length = tonumber(h["content-length"]),
    content_type = h["content-type"],
    content_range = h["content-range"],
    etag = h["etag"],
    last_modified = h["last-modified"],
    version_id = h["x-amz-version-id"],
    sse = h["x-amz-server-side-encryption"],
    metadata = meta,
  }
end

local function range_header(r)
  if r == nil then return nil end
  if type(r) == "string" then return r end
  if type(r) == "table" and math.type(r[1]) == "integer" then
    return "bytes=" .. r[1] .. "-" .. (r[2] and tostring(r[2]) or "")
  end
  error("s3.get_object: range must be \"bytes=a-b\" or {first, last}", 3)
end

-- ---- objects ---------------------------------------------------------------------------------

function Client:put_object(o)
  local bucket = bucket_of(self, o, "put_object")
  local key = check_name(o, "key", "put_object")
  local body = o.body
  if o.file then
    local size, err = core.file_size(o.file)
    if not size then return fail("io", "s3.put_object: " .. err) end
    if size > (o.multipart_threshold or self.multipart_threshold) then
      return self:_multipart(o, bucket, key, size)
    end
    body, err = core.read_file(o.file, 0, size)
    if not body then return fail("io", "s3.put_object: " .. err) end
  elseif type(body) ~= "string" then
    error("s3.put_object: give body (a string) or file (a path)", 2)
  end
  local res, err = self:_request("put_object", {
    method = "PUT", bucket = bucket, key = key, headers = object_headers(o), body = body,
  })
  if not res then return nil, err end
  return { etag = res.headers.etag, version_id = res.headers["x-amz-version-id"],
           size = #body }
end

function Client:get_object(o)
  local bucket = bucket_of(self, o, "get_object")
  local key = check_name(o, "key", "get_object")
  if o.file and not o.range then return self:_download(o, bucket, key) end
  local res, err = self:_request("get_object", {
    method = "GET", bucket = bucket, key = key, max_body = o.max_body,
    headers = { range = range_header(o.range) },
  })
  if not res then return nil, err end
  local info = object_info(res)
  if o.file then
    local n, werr = core.write_file(o.file, 0, res.body, true)
    if not n then return fail("io", "s3.get_object: " .. werr) end
    info.file = o.file
  else
    info.body = res.body
  end
  return info
end

-- A whole object into a file: its size from a HEAD (as boto3's download_file does), then
-- one GET when it fits in part_size, else part_size ranges one after the other (memory
-- stays one chunk). Every GET is pinned to the HEAD's ETag (If-Match) so an object
-- overwritten meanwhile fails the download instead of mixing two versions.
function Client:_download(o, bucket, key)
  local chunk = o.part_size or self.part_size
  local info, err = self:head_object { bucket = bucket, key = key }
  if not info then
    err.operation = "get_object"
    return nil, err
  end
  local size = info.content_length or 0
  local offset = 0
  repeat
    local headers = { ["if-match"] = info.etag }
    if size > chunk then
      headers.range = ("bytes=%d-%d"):format(offset, math.min(offset + chunk, size) - 1)
    end
    local res
    res, err = self:_request("get_object", {
      method = "GET", bucket = bucket, key = key, headers = headers,
      max_body = math.min(chunk, size) + 1,
    })
    if not res then return nil, err end
    local n, werr = core.write_file(o.file, offset, res.body, offset == 0)
    if not n then return fail("io", "s3.get_object: " .. werr) end
    if #res.body == 0 and offset < size then
      return fail("s3", ("s3.get_object %s/%s: the object ended at byte %d of %d"):format(bucket, key, offset, size))
    end
    offset = offset + #res.body
  until offset >= size
  info.status, info.file = 200, o.file
  return info
end

function Client:head_object(o)
  local bucket = bucket_of(self, o, "head_object")
  local key = check_name(o, "key", "head_object")
  -- luar.http applies max_body to a HEAD's Content-Length too (curl's MAXFILESIZE): an
  -- object larger than the 10 MiB default would fail as "too_large" without this
  local res, err = self:_request("head_object", { method = "HEAD", bucket = bucket, key = key,
                                                  max_body = 1 << 53 })
  if not res then return nil, err end
  return object_info(res)
end

function Client:delete_object(o)
  local bucket = bucket_of(self, o, "delete_object")
  local key = check_name(o, "key", "delete_object")
  local res, err = self:_request("delete_object", {
    method = "DELETE", bucket = bucket, key = key,
    query = o.version_id and { versionId = o.version_id } or nil,
  })
  if not res then return nil, err end
  return true
end

function Client:copy_object(o)
  local bucket = bucket_of(self, o, "copy_object")
  local key = check_name(o, "key", "copy_object")
  local src_bucket = o.source_bucket or bucket
  local src_key = check_name(o, "source_key", "copy_object")
  local headers = object_headers(o)
  headers["x-amz-copy-source"] = "/" .. core.uri_encode(src_bucket) .. "/" .. core.uri_encode(src_key, true)
  if o.metadata or o.content_type then headers["x-amz-metadata-directive"] = "REPLACE" end
  local res, err = self:_request("copy_object", {
    method = "PUT", bucket = bucket, key = key, headers = headers, body = "",
  })
  if not res then return nil, err end
  -- S3 may answer 200 and put an error in the body (the copy failed midway)
  if res.body:find("<Error>", 1, true) then
    res.status = 500
    return response_error(res, "copy_object", bucket .. "/" .. key)
  end
  return { etag = tag(res.body, "ETag"), last_modified = tag(res.body, "LastModified"),
           version_id = res.headers["x-amz-version-id"] }
end

-- ---- listing ---------------------------------------------------------------------------------

-- One ListObjectsV2 page.
function Client:list_objects_page(o)
  local bucket = bucket_of(self, o, "list_objects")
  local res, err = self:_request("list_objects", {
    method = "GET", bucket = bucket, max_body = o.max_body,
    query = {
      ["list-type"] = "2", prefix = o.prefix, delimiter = o.delimiter,
      ["max-keys"] = o.max_keys and tostring(o.max_keys), ["start-after"] = o.start_after,
      ["continuation-token"] = o.continuation_token,
    },
  })
  if not res then return nil, err end
  local body = res.body
  local page = {
    objects = {}, prefixes = {},
    is_truncated = tag(body, "IsTruncated") == "true",
    next_continuation_token = tag(body, "NextContinuationToken"),
    key_count = tonumber(tag(body, "KeyCount")),
  }
  for item in body:gmatch("<Contents>(.-)</Contents>") do
    page.objects[#page.objects + 1] = {
      key = tag(item, "Key"), size = tonumber(tag(item, "Size")), etag = tag(item, "ETag"),
      last_modified = tag(item, "LastModified"), storage_class = tag(item, "StorageClass"),
    }
  end
  for item in body:gmatch("<CommonPrefixes>(.-)</CommonPrefixes>") do
    page.prefixes[#page.prefixes + 1] = tag(item, "Prefix")
  end
  return page
end

-- for obj, err in client:list_objects{bucket=, prefix=} do ... end: every object, page
-- after page (continuation tokens followed); with a delimiter, each common prefix comes
-- as { prefix = "dir/" }. A failure ends the loop with one `false, err`.
function Client:list_objects(o)
  o = o or {}
  bucket_of(self, o, "list_objects")
  local page, items, i, token, done = nil, nil, 0, nil, false
  return function()
    while true do
      if items and i < #items then
        i = i + 1
        return items[i]
      end
      if done then return nil end
      local q = {}
      for k, v in pairs(o) do q[k] = v end
      q.continuation_token = token
      local err
      page, err = self:list_objects_page(q)
      if not page then
        done = true
        return false, err
      end
      items, i = page.objects, 0
      for _, p in ipairs(page.prefixes) do items[#items + 1] = { prefix = p } end
      token = page.next_continuation_token
      done = not page.is_truncated or token == nil or token == ""
    end
  end
end

-- ---- multipart -------------------------------------------------------------------------------

function Client:abort_multipart_upload(o)
  local bucket = bucket_of(self, o, "abort_multipart_upload")
  local res, err = self:_request("abort_multipart_upload", {
    method = "DELETE", bucket = bucket, key = check_name(o, "key", "abort_multipart_upload"),
    query = { uploadId = check_name(o, "upload_id", "abort_multipart_upload") },
  })
  if not res then return nil, err end
  return true
end

-- Starts one part's PUT outside luar.http (several travel at once).
function Client:_start_part(bucket, key, upload_id, n, data)
  local url, headers = self:_prepare {
    method = "PUT", bucket = bucket, key = key, body = data,
    query = { partNumber = tostring(n), uploadId = upload_id },
  }
  local timeout = type(self.timeout) == "number" and self.timeout or 300
  return core.start { method = "PUT", url = url, headers = headers, body = data, timeout = timeout }
end

-- Uploads the parts of `path`, `concurrency` at a time: one coroutine per worker, each
-- reading its part (a slice per loop turn), starting its PUT and yielding the call to the
-- scheduler below, which waits for whichever call finishes first. At most `concurrency`
-- parts are read at once. A failed part is retried (5xx, 429, transport errors) up to
-- PART_ATTEMPTS times; then the workers stop taking parts and the error is returned.
function Client:_upload_parts(bucket, key, upload_id, path, size, part_size, concurrency)
  local nparts = math.max(1, (size + part_size - 1) // part_size)
  local etags, next_part, failed = {}, 1, nil
  local target = bucket .. "/" .. key

  local function send(n, data)
    for attempt = 1, PART_ATTEMPTS do
      local call, kind, msg = self:_start_part(bucket, key, upload_id, n, data)
      if not call then return fail(kind, "s3.upload_part " .. target .. ": " .. msg) end
      local res, rkind, rmsg = coroutine.yield(call)
      local err, retry
      if res and res.status < 300 then return res end
      if res then
        err = select(2, response_error(res, "upload_part", target .. " part " .. n))
        retry = res.status >= 500 or res.status == 429
      else
        err = select(2, fail(rkind, "s3.upload_part " .. target .. " part " .. n .. ": " .. rmsg))
        retry = rkind ~= "invalid" and rkind ~= "too_large"
      end
      if not retry or attempt == PART_ATTEMPTS then return nil, err end
      time.sleep(0.25 * attempt)
    end
  end

  local function worker()
    while not failed and next_part <= nparts do
      local n = next_part
      next_part = n + 1
      local offset = (n - 1) * part_size
      local want = math.min(part_size, size - offset)
      local data, rerr = core.read_file(path, offset, want)
      if not data or #data ~= want then
        local _, err = fail("io", "s3.put_object " .. target .. ": " ..
          (rerr or (path .. " changed size while being uploaded")))
        failed = failed or err
        return
      end
      local res, err = send(n, data)
      data = nil
      if not res then
        failed = failed or err
        return
      end
      etags[n] = res.headers.etag
    end
  end

  local waiting = {}
  local function step(co, ...)
    local ok, call = coroutine.resume(co, ...)
    if not ok then
      local _, err = fail("invalid", "s3.put_object " .. target .. ": " .. tostring(call))
      failed = failed or err
    elseif coroutine.status(co) == "suspended" then
      waiting[#waiting + 1] = { co = co, call = call }
    end
  end
  for _ = 1, math.min(concurrency, nparts) do step(coroutine.create(worker)) end
  while #waiting > 0 do
    local calls = {}
    for i, w in ipairs(waiting) do calls[i] = w.call end
    local i = core.wait_any(calls)
    local w = table.remove(waiting, i)
    step(w.co, core.result(w.call))
  end
  if failed then return nil, failed end
  for n = 1, nparts do
    if not etags[n] then return fail("s3", "s3.put_object " .. target .. ": part " .. n .. " has no ETag") end
  end
  return etags
end

function Client:_multipart(o, bucket, key, size)
  local part_size = o.part_size or self.part_size
  if part_size < MIN_PART then
    error(("s3.put_object: part_size must be at least %d bytes (5 MiB)"):format(MIN_PART), 3)
  end
  while (size + part_size - 1) // part_size > MAX_PARTS do part_size = part_size * 2 end
  local concurrency = math.max(1, math.min(o.concurrency or self.concurrency, 64))
  local res, err = self:_request("create_multipart_upload", {
    method = "POST", bucket = bucket, key = key, query = { uploads = true },
    headers = object_headers(o), body = "",
  })
  if not res then return nil, err end
  local upload_id = tag(res.body, "UploadId")
  if not upload_id then return fail("s3", "s3.create_multipart_upload " .. bucket .. "/" .. key .. ": no UploadId in the answer") end

  local etags
  etags, err = self:_upload_parts(bucket, key, upload_id, o.file, size, part_size, concurrency)
  if etags then
    local xml = { "<CompleteMultipartUpload>" }
    for n, etag in ipairs(etags) do
      xml[#xml + 1] = ("<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>"):format(n, xml_escape(etag))
    end
    xml[#xml + 1] = "</CompleteMultipartUpload>"
    res, err = self:_request("complete_multipart_upload", {
      method = "POST", bucket = bucket, key = key, query = { uploadId = upload_id },
      headers = { ["content-type"] = "application/xml" }, body = table.concat(xml),
    })
    if res and res.body:find("<Error>", 1, true) then
      res.status = 500
      res, err = response_error(res, "complete_multipart_upload", bucket .. "/" .. key)
    end
    if res then
      return { etag = tag(res.body, "ETag"), version_id = res.headers["x-amz-version-id"],
               size = size, parts = #etags, upload_id = upload_id }
    end
  end
  -- the parts already stored cost money until the upload is aborted
  local ok, aerr = self:abort_multipart_upload { bucket = bucket, key = key, upload_id = upload_id }
  err.upload_id = upload_id
  err.aborted = ok == true
  if not ok then err.abort_error = aerr.message end
  return nil, err
end

-- ---- presigned URLs --------------------------------------------------------------------------

function Client:presign(o)
  local bucket = bucket_of(self, o, "presign")
  local key = check_name(o, "key", "presign")
  local method = (o.method or "GET"):upper()
  local host, path = self:_target(bucket, key)
  local strs = sorted_query(o.query)
  local headers
  if o.headers then
    headers = {}
    for k, v in pairs(o.headers) do headers[k:lower()] = tostring(v) end
  end
  local qs = core.presign(self._creds, {
    method = method, host = host, path = path, query = strs, headers = headers,
    payload_hash = "UNSIGNED-PAYLOAD", region = self.region, expires = o.expires or 3600,
    now = o.now,
  })
  return self._scheme .. "://" .. host .. core.uri_encode(path, true) .. "?" .. qs
end

-- ---- the signer alone (tests, other AWS services) ----------------------------------------------

local Signer = {}
Signer.__index = Signer

-- s3.signer{access_key=, secret_key=, session_token=}: SigV4 without a client.
function s3.signer(o)
  return setmetatable({ _creds = core.credentials(o.access_key, o.secret_key, o.session_token) }, Signer)
end

-- signer:sign{method, host, path, query, headers, payload_hash, region, service, amz_date|now}
-- -> authorization, amz_date, canonical_request, string_to_sign
function Signer:sign(r) return core.sign(self._creds, r) end

-- signer:presign{..., expires} -> query string (X-Amz-Signature last), canonical_request, string_to_sign
function Signer:presign(r) return core.presign(self._creds, r) end

s3.uri_encode = core.uri_encode

return s3
