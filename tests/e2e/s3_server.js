// The S3-compatible server the s3 plugin's tests talk to: s3rver (npm) on 127.0.0.1 with
// its data in a directory the test gives. s3rver 3.7 does not check SigV4 signatures (its
// authentication middleware accepts any V4 signature of a known key), so this front checks
// every request's signature itself, as S3 does (header and presigned; access key S3RVER,
// secret S3RVER), with Node's crypto: written apart from the plugin's C, and checked at
// start-up against the worked examples of AWS's documentation. In front of it, one line of
// JSON per request on stdout ({method, url, status, parts_in_flight, range, if_match, …})
// so a test can see what was sent, and optional faults for the multipart tests:
//   node --openssl-legacy-provider s3_server.js DIR '{"buckets":["a"],"fail_part":2}'
// (s3rver's continuation tokens are DES-encrypted: OpenSSL 3 has DES in its legacy
// provider only.)
//   fail_part: N    every UploadPart of part N answers 400 InvalidArgument;
//   flaky_part: N   the first attempt of part N answers 500 InternalError;
//   hold_parts: N   each UploadPart waits until N are in flight at once (or 10 s), so a
//                   test can prove the parts travel in parallel;
//   stall_parts     parts are read and never answered ({"aborted": true} when the
//                   client gives up).
// Prints {"port": N} when ready.
'use strict';
const crypto = require('crypto');
const http = require('http');
const S3rver = require('s3rver');

const dir = process.argv[2];
const opts = JSON.parse(process.argv[3] || '{}');
const s3 = new S3rver({
  silent: true,
  directory: dir,
  configureBuckets: (opts.buckets || []).map(name => ({ name })),
});

// ---- SigV4 verification ---------------------------------------------------------------

const SECRETS = { S3RVER: 'S3RVER', AKIAIOSFODNN7EXAMPLE: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };

// RFC 3986 encoding, as S3 wants it (encodeURIComponent leaves !'()* alone)
function enc(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, c => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();
const sha256 = data => crypto.createHash('sha256').update(data).digest('hex');

// Returns null when the request is signed right, else [status, code, message].
function verify(req, now) {
  const [rawPath, rawQuery = ''] = req.url.split(/\?(.*)/s);
  const params = rawQuery === '' ? [] : rawQuery.split('&').map(kv => {
    const i = kv.indexOf('=');
    const k = i < 0 ? kv : kv.slice(0, i), v = i < 0 ? '' : kv.slice(i + 1);
    return [decodeURIComponent(k), decodeURIComponent(v)];
  });
  const q = Object.fromEntries(params);
  let cred, signedHeaders, signature, amzDate, payloadHash;
  if (q['X-Amz-Algorithm']) {
    if (q['X-Amz-Algorithm'] !== 'AWS4-HMAC-SHA256') return [400, 'AuthorizationQueryParametersError', 'bad X-Amz-Algorithm'];
    cred = q['X-Amz-Credential'];
    signedHeaders = q['X-Amz-SignedHeaders'];
    signature = q['X-Amz-Signature'];
    amzDate = q['X-Amz-Date'];
    payloadHash = 'UNSIGNED-PAYLOAD';
    const expires = Number(q['X-Amz-Expires']);
    const t = Date.UTC(+amzDate.slice(0, 4), +amzDate.slice(4, 6) - 1, +amzDate.slice(6, 8),
                       +amzDate.slice(9, 11), +amzDate.slice(11, 13), +amzDate.slice(13, 15));
    if (!(expires >= 1 && expires <= 604800)) return [400, 'AuthorizationQueryParametersError', 'bad X-Amz-Expires'];
    if (now !== undefined && now > t + expires * 1000) return [403, 'AccessDenied', 'Request has expired'];
  } else {
    const auth = req.headers['authorization'] || '';
    const m = auth.match(/^AWS4-HMAC-SHA256 Credential=([^,]+),\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$/);
    if (!m) return [403, 'AccessDenied', 'no AWS4-HMAC-SHA256 Authorization header'];
    [, cred, signedHeaders, signature] = m;
    amzDate = req.headers['x-amz-date'];
    payloadHash = req.headers['x-amz-content-sha256'];
    if (!amzDate || !payloadHash) return [400, 'InvalidRequest', 'x-amz-date and x-amz-content-sha256 are required'];
  }
  const [ak, date, region, service, term] = (cred || '').split('/');
  const secret = SECRETS[ak];
  if (secret === undefined) return [403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'];
  if (term !== 'aws4_request' || date !== amzDate.slice(0, 8)) return [400, 'AuthorizationHeaderMalformed', 'bad credential scope'];
  const names = signedHeaders.split(';');
  if (!names.includes('host')) return [400, 'AuthorizationHeaderMalformed', 'host is not signed'];
  const canonicalUri = rawPath.split('/').map(seg => enc(decodeURIComponent(seg))).join('/');
  const canonicalQuery = params.filter(([k]) => k !== 'X-Amz-Signature')
    .map(([k, v]) => [enc(k), enc(v)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => k + '=' + v).join('&');
  const headerLines = names.map(n => n + ':' + String(req.headers[n] ?? '').trim().replace(/\s+/g, ' '));
  const canonical = [req.method, canonicalUri, canonicalQuery, headerLines.join('\n') + '\n',
                     signedHeaders, payloadHash].join('\n');
  const scope = [date, region, service, 'aws4_request'].join('/');
  const sts = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac('AWS4' + secret, date), region), service), 'aws4_request');
  const expected = hmac(key, sts).toString('hex');
  if (!signature || signature.length !== 64 ||
      !crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(signature))) {
    return [403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.'];
  }
  return null;
}

// The verifier against AWS's documented examples (GET Object with a range; the presigned
// GET of examplebucket/test.txt): it must accept them, and refuse them altered.
function selfTest() {
  const empty = sha256('');
  const get = {
    method: 'GET', url: '/test.txt',
    headers: { host: 'examplebucket.s3.amazonaws.com', range: 'bytes=0-9', 'x-amz-content-sha256': empty,
      'x-amz-date': '20130524T000000Z',
      authorization: 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,' +
        'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,' +
        'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41' },
  };
  const presigned = {
    method: 'GET', headers: { host: 'examplebucket.s3.amazonaws.com' },
    url: '/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request' +
      '&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host' +
      '&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404',
  };
  const altered = { ...get, headers: { ...get.headers, range: 'bytes=0-8' } };
  const ok = verify(get) === null && verify(presigned) === null &&
    verify(altered) !== null && verify({ ...presigned, url: presigned.url.replace('test.txt', 'test2.txt') }) !== null;
  if (!ok) {
    console.error('s3_server.js: the SigV4 verifier does not reproduce AWS\'s examples');
    process.exit(1);
  }
}
selfTest();

// ---- the server ----------------------------------------------------------------------------

let inflight = 0;
const flaked = new Set();
const EventEmitter = require('events');
const arrivals = new EventEmitter();
arrivals.setMaxListeners(100);

// Calls fn once `n` parts are in flight, or after 10 s.
function whenInFlight(n, fn) {
  if (inflight >= n) { arrivals.emit('part'); fn(); return; }
  let done = false;
  const go = () => {
    if (done || inflight < n) return;
    done = true;
    clearTimeout(timer);
    arrivals.removeListener('part', go);
    fn();
  };
  const timer = setTimeout(() => { done = true; arrivals.removeListener('part', go); fn(); }, 10000);
  arrivals.on('part', go);
}

function xmlError(res, status, code, message) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/xml');
  res.end('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code + '</Code><Message>' +
          message + '</Message><RequestId>FAULT-' + code + '</RequestId></Error>');
}

(async () => {
  await s3.configureBuckets();
  const koa = s3.callback();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const part = req.method === 'PUT' ? url.searchParams.get('partNumber') : null;
    if (part) inflight++;
    const seen = inflight;
    const range = req.headers['range'];
    res.on('close', () => {  // the client went away before the answer
      if (!res.writableFinished) {
        if (part) inflight--;
        process.stdout.write(JSON.stringify({ method: req.method, url: req.url, aborted: true }) + '\n');
      }
    });
    res.on('finish', () => {
      if (part) inflight--;
      process.stdout.write(JSON.stringify({ method: req.method, url: req.url, status: res.statusCode,
        parts_in_flight: part ? seen : undefined, sha256: req.headers['x-amz-content-sha256'],
        token: req.headers['x-amz-security-token'], range, if_match: req.headers['if-match'] }) + '\n');
    });
    const bad = verify(req, Date.now());
    if (bad) {
      req.resume();
      req.on('end', () => xmlError(res, bad[0], bad[1], bad[2]));
      return;
    }
    // s3rver lacks AbortMultipartUpload (it answers 405): answered here, as S3 does
    if (req.method === 'DELETE' && url.searchParams.has('uploadId')) {
      req.resume();
      req.on('end', () => { res.statusCode = 204; res.end(); });
      return;
    }
    if (part && Number(part) === opts.fail_part) {
      req.resume();
      req.on('end', () => xmlError(res, 400, 'InvalidArgument', 'part ' + part + ' refused by the test'));
      return;
    }
    if (part && Number(part) === opts.flaky_part && !flaked.has(part)) {
      flaked.add(part);
      req.resume();
      req.on('end', () => xmlError(res, 500, 'InternalError', 'We encountered an internal error. Please try again.'));
      return;
    }
    if (part && opts.stall_parts) {  // read the part, never answer
      req.resume();
      return;
    }
    if (part && opts.hold_parts) {
      whenInFlight(opts.hold_parts, () => koa(req, res));
      return;
    }
    koa(req, res);
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
})().catch(err => {
  console.error(err);
  process.exit(1);
});
