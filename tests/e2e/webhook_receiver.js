// A webhook receiver on loopback for the delivery tests: every request is verified with the
// independent `standardwebhooks` package (the Standard Webhooks reference library), then
// reported as one JSON line on stdout, so the test waits on events instead of polling.
//
// Usage: node webhook_receiver.js SECRET — prints {"port": N} once listening. Each request
// prints {"request": {t, method, path, headers, body, verified, error, status}} where `t`
// is the receive time in unix seconds (sub-millisecond) and `status` what was answered.
// Commands on stdin, one per line: "status N" (answer N from now on; 200 at start), "drop"
// (close connections without answering from now on). Ends on stdin EOF or SIGTERM.
'use strict';
const http = require('node:http');
const readline = require('node:readline');
const { Webhook } = require('standardwebhooks');

const secret = process.argv[2];
const wh = new Webhook(secret);
let status = 200;
let drop = false;

const server = http.createServer((req, res) => {
  const t = (performance.timeOrigin + performance.now()) / 1000;
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    let verified = false;
    let error = null;
    try {
      wh.verify(body, req.headers);
      verified = true;
    } catch (e) {
      error = String(e && e.message || e);
    }
    const answered = drop ? 0 : status;
    process.stdout.write(JSON.stringify({ request: {
      t, method: req.method, path: req.url, headers: req.headers, body, verified, error,
      status: answered,
    } }) + '\n');
    if (drop) {
      req.socket.destroy();
      return;
    }
    res.writeHead(answered, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: answered < 300 }));
  });
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'status') {
    status = Number(arg);
    drop = false;
  } else if (cmd === 'drop') {
    drop = true;
  }
  process.stdout.write(JSON.stringify({ ack: line.trim() }) + '\n');
}).on('close', () => process.exit(0));

server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
