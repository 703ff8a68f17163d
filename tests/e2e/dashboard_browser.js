// The dashboard in a real browser (Debian's chromium driven by playwright-core), run by
// test_dashboard.py: sign in with the keyboard, see the dead job, retry it, watch it
// succeed; replay dead jobs in bulk by error text and one with edited args; hostile job data
// shows as text; no console error (a CSP violation is one).
// Screenshots go to the artifacts folder. Prints one JSON line per step; exit 0 = passed.
//
// usage: node dashboard_browser.js BASE_URL TOKEN DEAD_JOB_ID HOSTILE_JOB_ID ARTIFACTS_DIR
"use strict";

const path = require("path");
const { chromium } = require("playwright-core");

const [base, token, jobId, hostileId, artifacts] = process.argv.slice(2);
const STEP_TIMEOUT = 30000;

function step(name, extra) {
  console.log(JSON.stringify(Object.assign({ step: name }, extra || {})));
}

// Text that only a rendering bug puts on a page.
async function checkText(page) {
  const text = await page.evaluate(() => document.getElementById("view").innerText);
  const bad = text.match(/\bnull\b|\bundefined\b|\[object |NaN/);
  if (bad) throw new Error("the page shows \"" + bad[0] + "\": " + text.slice(0, 300));
}

async function shot(page, name) {
  if (name !== "failure" && !name.startsWith("01")) await checkText(page);
  const file = path.join(artifacts, name + ".png");
  await page.screenshot({ path: file, fullPage: true });
  step("screenshot", { file });
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const problems = [];
  let page = null;
  try {
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(STEP_TIMEOUT);
    page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    page.on("dialog", (d) => { problems.push("unexpected dialog: " + d.message()); d.dismiss(); });

    // Sign in with the keyboard: the form has the focus; a wrong token is refused first.
    await page.goto(base + "/admin/");
    await page.waitForSelector("#login:not([hidden])");
    if (await page.evaluate(() => document.activeElement.id) !== "token")
      throw new Error("the token field does not have the focus at start");
    if (await page.isVisible("nav") || await page.isVisible("#signout"))
      throw new Error("the navigation shows before signing in");
    await shot(page, "01-login");
    await page.keyboard.type("not-the-token");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => /refused/.test(document.getElementById("login-error").textContent));
    // The browser reports the refused call itself as a console error: expected here only.
    for (let i = problems.length - 1; i >= 0; i--)
      if (/status of 401/.test(problems[i])) problems.splice(i, 1);
    step("wrong token refused");
    await page.keyboard.type(token);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#view h1:text-is('Overview')");
    if (await page.evaluate(() => sessionStorage.getItem("luar-admin-token")) !== token)
      throw new Error("the token is not kept in sessionStorage");
    if (await page.evaluate(() => document.cookie) !== "")
      throw new Error("the dashboard set a cookie");
    step("signed in");

    // The overview fills its rates on the second refresh (5 s later).
    await page.waitForFunction(() => {
      const v = [...document.querySelectorAll(".rate-v")];
      return v.length > 0 && v.every((e) => e.textContent.endsWith("/s"));
    }, null, { timeout: 15000 });
    const dead = await page.textContent("a.stat[href='#/dead'] .stat-n");
    if (dead !== "2") throw new Error("overview shows " + dead + " dead jobs, expected 2");
    await shot(page, "02-overview");

    // Tab order reaches the navigation; Enter follows the link to the dead jobs.
    await page.focus("nav a[href='#/overview']");
    for (let i = 0; i < 3; i++) await page.keyboard.press("Tab");
    if (await page.evaluate(() => document.activeElement.getAttribute("href")) !== "#/dead")
      throw new Error("Tab from Overview did not reach Dead in three steps");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#view h1:text-is('Dead jobs')");
    const row = page.locator("tr[data-id='" + jobId + "']");
    await row.waitFor();
    if (!/upstream down/.test(await row.textContent())) throw new Error("the dead job row has no error");
    step("dead job listed");

    // Hostile data is text: no element made from it, and it reads as typed.
    const hostile = page.locator("tr[data-id='" + hostileId + "']");
    if (!(await hostile.textContent()).includes("<b>bold</b>"))
      throw new Error("the hostile error is not shown as text");
    if (await page.locator("td b, img").count() !== 0) throw new Error("job data became HTML");
    await shot(page, "03-dead");

    // Retry: a real button, reachable and pressed with the keyboard.
    const button = row.getByRole("button", { name: "Retry job " + jobId });
    await button.focus();
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => /queued again/.test(document.getElementById("flash").textContent));
    step("retried");

    // Its page: refresh until it has succeeded.
    await page.goto(base + "/admin/#/job/" + jobId);
    const deadline = Date.now() + STEP_TIMEOUT;
    for (;;) {
      await page.waitForSelector("#view h1");
      const state = await page.textContent("dl.fields .badge");
      if (state === "succeeded") break;
      if (Date.now() > deadline) throw new Error("the job did not succeed; state " + state);
      await page.waitForTimeout(300);
      await page.click("button:text-is('Refresh')");
    }
    const result = await page.textContent("pre.code >> nth=1");
    if (!/"ok": true/.test(result)) throw new Error("the result is not shown: " + result);
    step("succeeded");
    await shot(page, "04-job-succeeded");

    // The hostile job's page: args and error as text too.
    await page.goto(base + "/admin/#/job/" + hostileId);
    await page.waitForSelector("#replay-args");
    if (await page.locator("main img, main b").count() !== 0) throw new Error("job data became HTML");
    await shot(page, "05-job-dead");

    // Bulk replay: filter the dead jobs by error text (typed into the form), then replay
    // every match, confirmed by a second button.
    await page.goto(base + "/admin/#/dead");
    await page.waitForSelector("#view h1:text-is('Dead jobs')");
    await page.focus("#f-error");
    await page.keyboard.type("bold");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => location.hash === "#/dead?error=bold");
    await page.waitForSelector("tr[data-id='" + hostileId + "']");
    if (await page.locator("tbody tr").count() !== 1) throw new Error("the filter kept other jobs");
    await page.click("button:text-is('Replay every matching dead job')");
    const yes = page.locator("button:text-is('Yes, replay them')");
    if (!(await yes.evaluate((b) => b === document.activeElement)))
      throw new Error("the confirmation button does not have the focus");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => /Replayed 1 dead job\./.test(document.getElementById("flash").textContent));
    step("bulk replayed");

    // It dies again (its args still say fail): replay it with edited args from its page.
    await page.goto(base + "/admin/#/job/" + hostileId);
    const until = Date.now() + STEP_TIMEOUT;
    for (;;) {
      await page.waitForSelector("#view h1");
      if (await page.locator("#replay-args").count() === 1) break;
      if (Date.now() > until) throw new Error("the replayed job did not die again");
      await page.waitForTimeout(300);
      await page.click("button:text-is('Refresh')");
    }
    await page.fill("#replay-args", '{"n": 5}');
    await page.click("button:text-is('Replay as a new job')");
    await page.waitForFunction(() => /Replayed as job \w+; the dead job was removed\./.test(
      document.getElementById("flash").textContent));
    const replayed = await page.evaluate(() => decodeURIComponent(location.hash.split("/")[2]));
    if (!replayed || replayed === hostileId) throw new Error("no new job page: " + replayed);
    step("replayed with edited args", { id: replayed });

    // The other pages render.
    for (const [hash, title, name] of [["#/jobs?state=any", "Jobs", "11-jobs"], ["#/queues", "Queues", "06-queues"],
      ["#/schedules", "Schedules", "07-schedules"], ["#/webhooks", "Inbound webhooks", "08-webhooks"],
      ["#/deliveries", "Outbound deliveries", "09-deliveries"], ["#/breakers", "Circuit breakers", "10-breakers"]]) {
      await page.goto(base + "/admin/" + hash);
      await page.waitForSelector("#view h1:text-is('" + title + "')");
      await shot(page, name);
    }
    // The breakers page (the last one) lists the host the script called.
    await page.waitForSelector("th:text-is('127.0.0.1:1')");

    // Sign out forgets the token.
    await page.click("#signout");
    await page.waitForSelector("#login:not([hidden])");
    if (await page.evaluate(() => sessionStorage.getItem("luar-admin-token")) !== null)
      throw new Error("sign out kept the token");
    step("signed out");
  } catch (e) {
    // What the page showed when it went wrong, and what the browser said.
    if (page) await shot(page, "failure").catch(() => null);
    throw new Error(e.message + (problems.length ? "\nbrowser problems:\n" + problems.join("\n") : ""));
  } finally {
    await browser.close();
  }
  if (problems.length) throw new Error("browser problems:\n" + problems.join("\n"));
  step("passed");
}

main().catch((e) => {
  console.log(JSON.stringify({ step: "failed", error: String(e && e.stack || e) }));
  process.exit(1);
});
