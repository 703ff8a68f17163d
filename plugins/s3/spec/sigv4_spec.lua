-- SigV4 against the worked examples of AWS's S3 documentation ("Signature Calculations for
-- the Authorization Header: Transferring Payload in a Single Chunk" and "Authenticating
-- Requests: Using Query Parameters"), reproduced exactly: the canonical request, the
-- string to sign and the signature. Run by tests/e2e/test_s3.py (`luar test` with the
-- plugin folder configured).
local s3 = require "luar.s3"

local AK = "AKIAIOSFODNN7EXAMPLE"
local SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
local HOST = "examplebucket.s3.amazonaws.com"
local DATE = "20130524T000000Z"
local EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

local signer = s3.signer { access_key = AK, secret_key = SK }

local function lines(t) return table.concat(t, "\n") end

describe("SigV4 (AWS documentation examples)", function()
  it("signs GET Object with a Range header", function()
    local auth, date, cr, sts = signer:sign {
      method = "GET", host = HOST, path = "/test.txt", region = "us-east-1",
      headers = { Range = "bytes=0-9", ["x-amz-content-sha256"] = EMPTY, ["x-amz-date"] = DATE },
      payload_hash = EMPTY, amz_date = DATE,
    }
    assert.are.equal(DATE, date)
    assert.are.equal(lines {
      "GET", "/test.txt", "",
      "host:examplebucket.s3.amazonaws.com", "range:bytes=0-9",
      "x-amz-content-sha256:" .. EMPTY, "x-amz-date:20130524T000000Z", "",
      "host;range;x-amz-content-sha256;x-amz-date", EMPTY,
    }, cr)
    assert.are.equal(lines {
      "AWS4-HMAC-SHA256", DATE, "20130524/us-east-1/s3/aws4_request",
      "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
    }, sts)
    assert.are.equal("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," ..
      "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," ..
      "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", auth)
  end)

  it("signs PUT Object (a key with $, a Date header, a storage class, a payload)", function()
    local body = "Welcome to Amazon S3."
    local hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    assert.are.equal(hash, require("luar.crypto").digest("sha256", body, "hex"))
    local auth, _, cr, sts = signer:sign {
      method = "PUT", host = HOST, path = "/test$file.text", region = "us-east-1",
      headers = { Date = "Fri, 24 May 2013 00:00:00 GMT", ["x-amz-storage-class"] = "REDUCED_REDUNDANCY" },
      payload_hash = hash, amz_date = DATE,
    }
    assert.are.equal(lines {
      "PUT", "/test%24file.text", "",
      "date:Fri, 24 May 2013 00:00:00 GMT", "host:examplebucket.s3.amazonaws.com",
      "x-amz-content-sha256:" .. hash, "x-amz-date:20130524T000000Z",
      "x-amz-storage-class:REDUCED_REDUNDANCY", "",
      "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class", hash,
    }, cr)
    assert.are.equal(lines {
      "AWS4-HMAC-SHA256", DATE, "20130524/us-east-1/s3/aws4_request",
      "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
    }, sts)
    assert.are.equal("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," ..
      "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class," ..
      "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd", auth)
  end)

  it("signs GET Bucket Lifecycle (a bare query parameter)", function()
    local auth, _, cr = signer:sign {
      method = "GET", host = HOST, path = "/", query = { lifecycle = "" }, region = "us-east-1",
      payload_hash = EMPTY, amz_date = DATE,
    }
    assert.are.equal(lines {
      "GET", "/", "lifecycle=",
      "host:examplebucket.s3.amazonaws.com", "x-amz-content-sha256:" .. EMPTY,
      "x-amz-date:20130524T000000Z", "", "host;x-amz-content-sha256;x-amz-date", EMPTY,
    }, cr)
    assert.truthy(auth:find("Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543$"))
  end)

  it("signs Get Bucket (List Objects) with a sorted query", function()
    local auth, _, cr, sts = signer:sign {
      method = "GET", host = HOST, path = "/", query = { prefix = "J", ["max-keys"] = "2" },
      region = "us-east-1", payload_hash = EMPTY, amz_date = DATE,
    }
    assert.are.equal("GET\n/\nmax-keys=2&prefix=J\n", cr:sub(1, 26))
    assert.truthy(sts:find("df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7$"))
    assert.truthy(auth:find("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7$"))
  end)

  it("presigns GET examplebucket/test.txt for 86400 s (query-string authentication)", function()
    local qs, cr, sts = signer:presign {
      method = "GET", host = HOST, path = "/test.txt", region = "us-east-1",
      payload_hash = "UNSIGNED-PAYLOAD", amz_date = DATE, expires = 86400,
    }
    assert.are.equal(lines {
      "GET", "/test.txt",
      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" ..
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host",
      "host:examplebucket.s3.amazonaws.com", "", "host", "UNSIGNED-PAYLOAD",
    }, cr)
    assert.are.equal(lines {
      "AWS4-HMAC-SHA256", DATE, "20130524/us-east-1/s3/aws4_request",
      "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04",
    }, sts)
    assert.are.equal("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" ..
      "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" ..
      "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404", qs)
  end)

  it("gives the same presigned URL through a client with now pinned", function()
    local c = s3.client { access_key = AK, secret_key = SK, region = "us-east-1",
                          endpoint = "https://s3.amazonaws.com", path_style = false }
    -- 2013-05-24T00:00:00Z
    local url = c:presign { bucket = "examplebucket", key = "test.txt", expires = 86400, now = 1369353600 }
    assert.are.equal("https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256" ..
      "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" ..
      "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" ..
      "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404", url)
  end)

  it("puts a session token in the signed headers and the presigned query", function()
    local t = s3.signer { access_key = AK, secret_key = SK, session_token = "FQoGZXIvYXdzEXAMPLETOKEN" }
    local auth, _, cr = t:sign { method = "GET", host = HOST, path = "/a", region = "us-east-1",
                                 payload_hash = EMPTY, amz_date = DATE }
    assert.truthy(cr:find("\nx-amz-security-token:FQoGZXIvYXdzEXAMPLETOKEN\n", 1, true))
    assert.truthy(auth:find("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,", 1, true))
    local qs = t:presign { method = "GET", host = HOST, path = "/a", region = "us-east-1",
                           payload_hash = "UNSIGNED-PAYLOAD", amz_date = DATE, expires = 60 }
    assert.truthy(qs:find("&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLETOKEN&X-Amz-SignedHeaders=host&", 1, true))
  end)

  it("encodes keys by S3's rules: unreserved kept, '/' kept in paths, the rest %XY", function()
    assert.are.equal("a/b%20c/%C3%A9%2B%3D~_-.", s3.uri_encode("a/b c/é+=~_-.", true))
    assert.are.equal("a%2Fb", s3.uri_encode("a/b"))
    local _, _, cr = signer:sign { method = "GET", host = HOST, path = "/dir/my file+1.txt",
      query = { ["continuation-token"] = "1/a b=", ["list-type"] = "2" },
      region = "eu-west-1", payload_hash = EMPTY, amz_date = DATE }
    local want = "GET\n/dir/my%20file%2B1.txt\ncontinuation-token=1%2Fa%20b%3D&list-type=2\n"
    assert.are.equal(want, cr:sub(1, #want))
  end)

  it("derives a new signing key when the region changes (and signs the same again)", function()
    local r = { method = "GET", host = HOST, path = "/test.txt", region = "us-east-1",
      headers = { Range = "bytes=0-9" }, payload_hash = EMPTY, amz_date = DATE }
    local a1 = signer:sign(r)
    r.region = "eu-west-1"
    local a2 = signer:sign(r)
    r.region = "us-east-1"
    local a3 = signer:sign(r)
    assert.are_not.equal(a1, a2)
    assert.are.equal(a1, a3)
  end)

  it("refuses presigned lifetimes AWS refuses", function()
    assert.has_error(function()
      signer:presign { method = "GET", host = HOST, path = "/", region = "us-east-1",
                       payload_hash = "UNSIGNED-PAYLOAD", amz_date = DATE, expires = 604801 }
    end, "s3.presign: expires must be 1..604800 seconds, got 604801")
  end)
end)
