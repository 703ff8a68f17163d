// The OAuth 2.0 / OpenID Connect provider luar.oauth is tested against: the npm
// `oauth2-mock-server` (real RS256 keys, a real JWKS, PKCE S256 checked at the token
// endpoint, nonces carried into ID tokens) on 127.0.0.1, plus what a test needs to see and
// steer it:
//
// Usage: node oauth_provider.js — prints {"issuer": "http://127.0.0.1:N"} once listening.
// Every token request prints {"token": {grant_type, status, scope, ...}} (so the test counts
// refreshes at the server side, as events); every revocation {"revoke": {token}}.
// Commands on stdin, one JSON object a line, each acknowledged by {"ack": <n>}:
//   {"next": "invalid_grant"}    the next token request answers 400 invalid_grant
//   {"next": "expires_in", "value": 5}   the next token answer's expires_in
//   {"next": "wrong_aud"}        the next ID token's aud is another client's
//   {"next": "wrong_nonce"}      the next ID token's nonce is not the one sent
//   {"next": "tamper"}           the next ID token's payload is changed after signing
// Scopes: an authorization code grants the scope its authorize request asked for (the mock
// itself would answer "dummy"); a refresh without scope answers none (RFC 6749 §5.1:
// unchanged). Ends on stdin EOF or SIGTERM.
'use strict';
const readline = require('node:readline');

(async () => {
  const { OAuth2Server, Events } = await import('oauth2-mock-server');
  const server = new OAuth2Server();
  await server.issuer.keys.generate('RS256');
  const scopeOfCode = {};
  const pending = {};       // one-shot behaviours by name -> value
  let acks = 0;
  const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

  server.service.on(Events.BeforeAuthorizeRedirect, (redirect, req) => {
    const code = redirect.url.searchParams.get('code');
    const q = new URL(req.url, 'http://x').searchParams;
    if (code) scopeOfCode[code] = q.get('scope') || '';
  });
  server.service.on(Events.BeforeTokenSigning, (token, req) => {
    const p = token.payload;
    p.jti = require('node:crypto').randomUUID(); // two tokens of one second differ
    if ('nonce' in p || req.body.grant_type === 'authorization_code') {
      if (pending.wrong_aud && p.nonce !== undefined) { p.aud = 'someone-else'; }
      if (pending.wrong_nonce && p.nonce !== undefined) { p.nonce = 'not-the-nonce'; }
    }
  });
  server.service.on(Events.BeforeResponse, (response, req) => {
    const b = req.body;
    const info = { grant_type: b.grant_type, code_verifier: !!b.code_verifier,
                   client_id: b.client_id, has_secret: !!b.client_secret };
    if (pending.invalid_grant) {
      delete pending.invalid_grant;
      response.statusCode = 400;
      response.body = { error: 'invalid_grant', error_description: 'refresh token revoked' };
    } else {
      if (b.grant_type === 'authorization_code') response.body.scope = scopeOfCode[b.code] || '';
      if (b.grant_type === 'refresh_token' && !b.scope) delete response.body.scope;
      if (pending.expires_in !== undefined) {
        response.body.expires_in = pending.expires_in;
        delete pending.expires_in;
      }
      if (response.body.id_token && pending.tamper) {
        const [h, p, s] = response.body.id_token.split('.');
        const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
        claims.sub = 'mallory';
        response.body.id_token = [h, Buffer.from(JSON.stringify(claims)).toString('base64url'), s].join('.');
      }
      delete pending.tamper;
      delete pending.wrong_aud;
      delete pending.wrong_nonce;
    }
    info.status = response.statusCode;
    info.access_token = response.body.access_token;
    info.refresh_token = response.body.refresh_token;
    info.scope = response.body.scope;
    out({ token: info });
  });
  server.service.on(Events.BeforeRevoke, (response, req) => {
    out({ revoke: { status: response.statusCode } });
  });

  await server.start(0, '127.0.0.1');
  // The mock names itself http://localhost:N; a fresh machine may have no localhost entry
  // in /etc/hosts, and tests speak to 127.0.0.1 only.
  server.issuer.url = 'http://127.0.0.1:' + server.address().port;
  out({ issuer: server.issuer.url });

  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    const cmd = JSON.parse(line);
    pending[cmd.next] = cmd.value === undefined ? true : cmd.value;
    out({ ack: ++acks });
  });
  rl.on('close', () => server.stop().then(() => process.exit(0)));
  process.on('SIGTERM', () => server.stop().then(() => process.exit(0)));
})().catch((e) => { console.error(e); process.exit(1); });
