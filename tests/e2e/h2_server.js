// An HTTP/2 (TLS, ALPN h2 and http/1.1) test upstream for the outbound client, on loopback.
// Usage: node h2_server.js CERT KEY — prints its port, then answers every request with a
// JSON body naming the HTTP version the request came over. Ends on stdin EOF or SIGTERM.
'use strict';
const http2 = require('node:http2');
const fs = require('node:fs');
const [cert, key] = process.argv.slice(2);
const server = http2.createSecureServer({
  cert: fs.readFileSync(cert), key: fs.readFileSync(key), allowHTTP1: true,
}, (req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ httpVersion: req.httpVersion, path: req.url }));
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(server.address().port + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
