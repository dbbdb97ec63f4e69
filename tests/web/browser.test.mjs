// The demo in a real browser: Debian's chromium (never a downloaded one) driven by playwright-core,
// against three presence-web processes. Two pages on different nodes join one room and see each
// other; a status change shows on the other page; the cut button on one node makes its people
// leave the other page (while it keeps showing its own) and heal brings them back; a closed page
// leaves. A screenshot goes to $SCREENSHOT_DIR (meson: the build directory).
import {test, before, after} from "node:test";
import assert from "node:assert/strict";
import {existsSync, mkdirSync} from "node:fs";
import {join} from "node:path";
import {chromium} from "playwright-core";
import {eventually, startCluster} from "./cluster.mjs";

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
let cluster;
let browser;

before(async () => {
  if (!existsSync(executablePath)) throw new Error(`no browser at ${executablePath}: run scripts/setup (Debian's chromium)`);
  cluster = await startCluster(3);
  browser = await chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  cluster?.stop();
});

async function joinRoom(page, node, name) {
  await page.goto(node.web);
  await page.fill("#room", "demo");
  await page.fill("#name", name);
  await page.click("#join");
  await page.locator("#me-name", {hasText: name}).waitFor();
}

const person = (page, name) => page.locator(`#people li[data-key="${name}"]`);
const LONG = {timeout: 30000};

test("two browsers on two nodes: join, status, cut, heal, leave", async () => {
  const [n1, n2, n3] = cluster;
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  const a = await ctxA.newPage();
  const b = await ctxB.newPage();
  const errors = [];
  for (const p of [a, b]) p.on("pageerror", (e) => errors.push(String(e)));

  await joinRoom(a, n1, "alice");
  await joinRoom(b, n2, "bob");
  await person(a, "bob").waitFor(LONG);
  await person(b, "alice").waitFor(LONG);
  assert.match(await person(a, "bob").textContent(), /on node-2/);

  // The cluster panel shows all three nodes up from here.
  await eventually(async () => (await a.locator('#cluster tbody td[data-status="up"]').count()) === 3, "3 nodes up on a's panel");

  await b.selectOption("#status", "away");
  await person(a, "bob").locator('[data-status="away"]').waitFor(LONG);
  await b.fill("#typing", "hello");
  await person(a, "bob").locator('[data-status="typing"]').waitFor(LONG);
  await person(a, "bob").locator('[data-status="away"]').waitFor(LONG);  // typing ends after a pause

  // Cut node-2 off from its peers with the page's button.
  await b.click("#cut");
  await b.locator("#offline-banner").waitFor({state: "visible", ...LONG});
  await person(a, "bob").waitFor({state: "detached", ...LONG});
  await person(b, "alice").waitFor({state: "detached", ...LONG});
  await person(b, "bob").waitFor(LONG);  // the cut node keeps working on its own
  await b.selectOption("#status", "online");  // and takes writes meanwhile
  const shotDir = process.env.SCREENSHOT_DIR ?? ".";
  mkdirSync(shotDir, {recursive: true});
  await b.screenshot({path: join(shotDir, "presence-web-cut.png"), fullPage: true});

  await b.click("#heal");
  await b.locator("#offline-banner").waitFor({state: "hidden", ...LONG});
  await person(a, "bob").locator('[data-status="online"]').waitFor(LONG);  // back, with what it did meanwhile
  await person(b, "alice").waitFor(LONG);

  // A third page on node-3 sees both.
  const c = await (await browser.newContext()).newPage();
  await joinRoom(c, n3, "carol");
  await person(c, "alice").waitFor(LONG);
  await person(c, "bob").waitFor(LONG);
  await a.screenshot({path: join(shotDir, "presence-web.png"), fullPage: true});

  await b.close();
  await person(a, "bob").waitFor({state: "detached", ...LONG});
  await person(c, "bob").waitFor({state: "detached", ...LONG});
  assert.deepEqual(errors, []);
});
