// Signs webhook messages with the independent `standardwebhooks` npm package (the Standard
// Webhooks reference library), for the e2e tests: Luar's verifier must accept what it signs.
// stdin: {"secret": "whsec_…", "messages": [{"id": "msg_1", "timestamp": 1700000000,
// "body": "…"}]}; stdout: a JSON list of header objects, one per message.
"use strict";
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const req = JSON.parse(input);
  const wh = new Webhook(req.secret);
  const out = req.messages.map((m) => ({
    "webhook-id": m.id,
    "webhook-timestamp": String(m.timestamp),
    "webhook-signature": wh.sign(m.id, new Date(m.timestamp * 1000), m.body),
  }));
  process.stdout.write(JSON.stringify(out));
});
