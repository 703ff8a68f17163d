---@meta
-- luar.s3 (plugin plugins/s3): objects in S3 and S3-compatible stores (MinIO, Ceph, R2),
-- AWS Signature Version 4, multipart uploads, presigned URLs. Calls marked ⏸ wait (they
-- yield the running handler, job or `luar run` script). See plugins/s3/README.md and
-- docs/files-on-s3.md.

---@class luar.s3
---@field version string
local s3 = {}

---@class luar.s3.Error: luar.Error
---@field kind "s3"|"io"|"timeout"|"connect"|"tls"|"too_large"|"invalid" "s3": S3 answered an error status; "io": a local file could not be read or written; the others come from luar.http
---@field status? integer the HTTP status (kind "s3")
---@field code? string S3's error code: "NoSuchKey", "NoSuchBucket", "SignatureDoesNotMatch", "AccessDenied" …; for a HEAD (no body) one derived from the status: "NotFound", "Forbidden" …
---@field request_id? string S3's RequestId (from the body, else x-amz-request-id)
---@field s3_message? string S3's own Message
---@field operation? string "put_object", "upload_part", …
---@field upload_id? string a failed multipart upload's id
---@field aborted? boolean a failed multipart upload was aborted (its parts deleted)
---@field abort_error? string why the abort failed, when it did

---@class luar.s3.ClientOptions
---@field region? string default plugins.s3.region, AWS_REGION, AWS_DEFAULT_REGION, then "us-east-1"
---@field access_key? string with secret_key; default plugins.s3.access_key, then AWS_ACCESS_KEY_ID
---@field secret_key? string default plugins.s3.secret_key, then AWS_SECRET_ACCESS_KEY; redacted from logs
---@field session_token? string temporary credentials: taken from the same place as the keys (AWS_SESSION_TOKEN with the AWS_* keys)
---@field endpoint? string "https://minio.internal:9000"; default plugins.s3.endpoint, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then https://s3.<region>.amazonaws.com
---@field path_style? boolean bucket in the path (true) or in the host name (false); default true with an endpoint, false for AWS; buckets with dots always use the path
---@field bucket? string the bucket of calls that give none
---@field part_size? integer multipart part size and download chunk in bytes (default 8 MiB, at least 5 MiB for uploads)
---@field multipart_threshold? integer files larger than this are uploaded in parts (default part_size)
---@field concurrency? integer parts uploaded at once (default 4, at most 64)
---@field timeout? number|{connect?: number, total?: number} per request (luar.http's); parts: a number, default 300 s
---@field retry? false|luar.RetryOptions luar.http's retry of single calls (idempotent methods by default)

---@class luar.s3.Client
---@field region string
---@field endpoint string
---@field path_style boolean
local Client = {}

---@class luar.s3.PutOptions
---@field bucket? string
---@field key string
---@field body? string the object's bytes (or file)
---@field file? string a local file; larger than multipart_threshold: a multipart upload
---@field content_type? string
---@field metadata? table<string, string|number> sent as x-amz-meta-<name> (names lower-cased)
---@field sse? "AES256"|"aws:kms"|"aws:kms:dsse" x-amz-server-side-encryption
---@field sse_kms_key_id? string x-amz-server-side-encryption-aws-kms-key-id
---@field cache_control? string
---@field content_disposition? string
---@field content_encoding? string
---@field storage_class? string "STANDARD", "STANDARD_IA", …
---@field acl? string x-amz-acl
---@field headers? table<string, string> any other request header (signed)
---@field part_size? integer
---@field multipart_threshold? integer
---@field concurrency? integer

---@class luar.s3.PutResult
---@field etag string
---@field version_id? string
---@field size integer bytes sent
---@field parts? integer multipart only
---@field upload_id? string multipart only

---⏸ Stores an object from a string or a local file.
---@param o luar.s3.PutOptions
---@return luar.s3.PutResult|nil
---@return luar.s3.Error|nil
function Client:put_object(o) end

---@class luar.s3.ObjectInfo
---@field status integer 200, or 206 for a range
---@field headers table<string, string>
---@field body? string get_object without file
---@field file? string get_object with file
---@field content_length? integer
---@field content_type? string
---@field content_range? string "bytes 0-9/1234" for a range
---@field etag? string
---@field last_modified? string
---@field version_id? string
---@field sse? string
---@field metadata table<string, string> x-amz-meta-* without the prefix

---@class luar.s3.ObjectRef
---@field bucket? string default: the client's bucket (note: the call writes it into this table)
---@field key string

---@class luar.s3.GetOptions: luar.s3.ObjectRef
---@field range? string|{[1]: integer, [2]?: integer} "bytes=0-99", or {first, last} (last omitted: to the end)
---@field file? string write the object to this path instead of returning its body (any size, in part_size ranges)
---@field max_body? integer largest body returned as a string (default 10 MiB)
---@field part_size? integer bytes per ranged GET when writing a file

---@class luar.s3.DeleteOptions: luar.s3.ObjectRef
---@field version_id? string deletes that version (versioned buckets)

---@class luar.s3.CopyOptions: luar.s3.ObjectRef
---@field source_bucket? string default: `bucket`
---@field source_key string
---@field metadata? table<string, string> replaces the metadata (x-amz-meta-*)
---@field content_type? string replaces the metadata too
---@field cache_control? string
---@field content_disposition? string
---@field content_encoding? string
---@field storage_class? string "STANDARD", "STANDARD_IA", "GLACIER", …
---@field acl? string "private", "public-read", …
---@field sse? string "AES256" or "aws:kms"
---@field sse_kms_key_id? string
---@field headers? table<string, string> more request headers

---@class luar.s3.CopyResult
---@field etag? string
---@field last_modified? string
---@field version_id? string

---@class luar.s3.ListPage
---@field objects luar.s3.ListedObject[]
---@field prefixes string[]
---@field is_truncated boolean
---@field next_continuation_token? string
---@field key_count? integer

---@class luar.s3.AbortOptions: luar.s3.ObjectRef
---@field upload_id string

---@class luar.s3.PresignOptions: luar.s3.ObjectRef
---@field method? string default "GET"
---@field expires? integer seconds the URL is valid, 1..604800 (default 3600)
---@field now? number the signing time (unix seconds; default the host's clock)
---@field query? table<string, string> more query parameters (signed)
---@field headers? table<string, string> headers the user of the URL must send (signed)

---⏸ Reads an object into a string (at most max_body bytes, default 10 MiB) or a file
---(any size: a HEAD, then part_size ranges written one after the other, each pinned to
---the HEAD's ETag).
---@param o luar.s3.GetOptions
---@return luar.s3.ObjectInfo|nil
---@return luar.s3.Error|nil
function Client:get_object(o) end

---⏸ An object's size, type, ETag and metadata without its bytes.
---@param o luar.s3.ObjectRef
---@return luar.s3.ObjectInfo|nil
---@return luar.s3.Error|nil code "NotFound" when there is no such object
function Client:head_object(o) end

---⏸ Deletes an object (true also when it did not exist: S3's answer).
---@param o luar.s3.DeleteOptions
---@return true|nil
---@return luar.s3.Error|nil
function Client:delete_object(o) end

---⏸ Copies an object server-side (up to 5 GiB). Metadata are copied unless metadata or
---content_type is given (then replaced).
---@param o luar.s3.CopyOptions
---@return luar.s3.CopyResult|nil
---@return luar.s3.Error|nil
function Client:copy_object(o) end

---@class luar.s3.ListOptions
---@field bucket? string
---@field prefix? string
---@field delimiter? string common prefixes come as { prefix = "dir/" } entries
---@field max_keys? integer page size (S3: at most 1000)
---@field start_after? string
---@field continuation_token? string list_objects_page: the page after the one that gave this token
---@field max_body? integer largest listing page body in bytes (luar.http's default 10 MiB)

---@class luar.s3.ListedObject
---@field key? string
---@field size? integer
---@field etag? string
---@field last_modified? string
---@field storage_class? string
---@field prefix? string a common prefix (with delimiter) instead of an object

---⏸ Iterates over every object (ListObjectsV2, continuation tokens followed):
---`for obj, err in c:list_objects{prefix = "a/"} do ... end`. A failure ends the loop with
---one `false, err`.
---@param o luar.s3.ListOptions
---@return fun(): luar.s3.ListedObject|false|nil, luar.s3.Error?
function Client:list_objects(o) end

---⏸ One ListObjectsV2 page.
---@param o luar.s3.ListOptions
---@return luar.s3.ListPage|nil
---@return luar.s3.Error|nil
function Client:list_objects_page(o) end

---⏸ Aborts a multipart upload (put_object does it itself when a part fails).
---@param o luar.s3.AbortOptions
---@return true|nil
---@return luar.s3.Error|nil
function Client:abort_multipart_upload(o) end

---A query-string-signed URL anyone can use until it expires (no wait, no request).
---@param o luar.s3.PresignOptions
---@return string url
function Client:presign(o) end

---Makes a client; raises when no credentials are found.
---@param opts? luar.s3.ClientOptions
---@return luar.s3.Client
function s3.client(opts) end

---@class luar.s3.Signer
local Signer = {}

---@class luar.s3.SignRequest
---@field method string
---@field host string the Host header
---@field path string raw (not percent-encoded)
---@field query? table<string, string> raw
---@field headers? table<string, string> signed besides host and x-amz-*
---@field payload_hash string hex SHA-256 or "UNSIGNED-PAYLOAD"
---@field region string
---@field service? string default "s3"
---@field amz_date? string "20130524T000000Z"; or now
---@field now? number unix seconds
---@field expires? integer presign only

---SigV4 of one request for the Authorization header.
---@param r luar.s3.SignRequest
---@return string authorization
---@return string amz_date
---@return string canonical_request
---@return string string_to_sign
function Signer:sign(r) end

---SigV4 query string (X-Amz-Signature last).
---@param r luar.s3.SignRequest
---@return string query
---@return string canonical_request
---@return string string_to_sign
function Signer:presign(r) end

---@class luar.s3.Credentials
---@field access_key string
---@field secret_key string
---@field session_token? string temporary credentials (STS)

---SigV4 without a client (other AWS services, tests).
---@param o luar.s3.Credentials
---@return luar.s3.Signer
function s3.signer(o) end

---S3's URI encoding (unreserved characters kept; "/" kept when keep_slash).
---@param s string
---@param keep_slash? boolean
---@return string
function s3.uri_encode(s, keep_slash) end

return s3
