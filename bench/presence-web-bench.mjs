// presence-web under load, three real server processes on 127.0.0.1 (bench/RESULTS.md has the
// numbers and conditions).
//
//   node bench/presence-web-bench.mjs browser [CHANGES]      default 200
//     Two chromium pages on two nodes (Debian's chromium, playwright-core); page A changes its
//     status CHANGES times (one at a time, within the server's rate limit), page B timestamps
//     (Date.now(), same machine clock) when its DOM shows the new status. Prints p50/p99/max ms.
//   node bench/presence-web-bench.mjs clients [N] [SECONDS]  default 1000 clients, 30 s
//     N WebSocket clients (the ws package) spread round-robin over the three nodes, in rooms of
//     100, each changing its status every 10 s (staggered). Latency: from a client's send to
//     each receipt of that change by a client of the same room on another node. Server CPU
//     (utime+stime from /proc over the window) and RSS growth per client.
// PRESENCE_WEB (default build-bench/examples/presence-web, else build/) names the server binary.
import {existsSync, readFileSync} from "node:fs";
import {fileURLToPath} from "node:url";
import {dirname, join} from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
process.env.PRESENCE_WEB ??= ["build-bench", "build"].map((b) => join(root, b, "examples/presence-web")).find(existsSync);
const {startCluster, eventually} = await import("../tests/web/cluster.mjs");
const {Client} = await import("../tests/web/client.mjs");

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const summary = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return `n=${s.length} p50=${pct(s, 50).toFixed(1)} ms p99=${pct(s, 99).toFixed(1)} ms max=${s[s.length - 1].toFixed(1)} ms`;
};

function procStat(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);  // utime + stime
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);  // KiB
  return {cpuS: ticks / 100, rssKiB: rss};
}

async function browserLatency(changes) {
  const {chromium} = await import("../tests/web/node_modules/playwright-core/index.mjs");
  const cluster = await startCluster(3);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  try {
    const [a, b] = [await (await browser.newContext()).newPage(), await (await browser.newContext()).newPage()];
    for (const [page, node, name] of [[a, cluster[0], "alice"], [b, cluster[1], "bob"]]) {
      await page.goto(node.web);
      await page.fill("#room", "bench");
      await page.fill("#name", name);
      await page.click("#join");
    }
    await b.locator('#people li[data-key="alice"]').waitFor({timeout: 30000});
    await b.evaluate(() => {
      window.__seen = [];
      new MutationObserver(() => {
        const s = document.querySelector('#people li[data-key="alice"] [data-status]');
        if (s) window.__seen.push([s.dataset.status, Date.now()]);
      }).observe(document.querySelector("#people"), {childList: true, subtree: true});
    });
    const latencies = [];
    for (let i = 0; i < changes; i++) {
      const status = i % 2 === 0 ? "away" : "online";
      const t0 = await a.evaluate((s) => {
        const sel = document.querySelector("#status");
        sel.value = s;
        const t = Date.now();
        sel.dispatchEvent(new Event("change"));
        return t;
      }, status);
      let t1 = null;
      await eventually(async () => {
        t1 = await b.evaluate(([s, t]) => (window.__seen.find(([x, at]) => x === s && at >= t) ?? [])[1] ?? null, [status, t0]);
        return t1 !== null;
      }, `change ${i} drawn on page B`);
      latencies.push(t1 - t0);
      await b.evaluate(() => (window.__seen = []));
      await new Promise((r) => setTimeout(r, 110));  // under the 10 messages/s per socket limit
    }
    console.log(`browser: status change in page A (node-1) -> drawn in page B (node-2): ${summary(latencies)}`);
  } finally {
    await browser.close();
    cluster.stop();
  }
}

async function clientsLoad(n, seconds) {
  const cluster = await startCluster(3);
  try {
    const before = cluster.map((node) => procStat(node.proc.pid));
    const clients = [];
    for (let i = 0; i < n; i++) {
      const node = i % 3;
      const c = new Client(cluster[node].web);
      c.node = node;
      c.name = `u${i}`;
      c.room = `r${Math.floor(i / 100)}`;
      clients.push(c);
      if (i % 50 === 49) await Promise.all(clients.slice(-50).map((x) => x.opened));
    }
    await Promise.all(clients.map((c) => c.opened));
    const sent = new Map();  // name -> {status, t0}
    const latencies = [];
    for (const c of clients) {
      c.ws.on("message", (data) => {
        if (c.fold) return;
        const frame = JSON.parse(data.toString());
        if (frame.event !== "presence_diff") return;
        const t1 = performance.now();
        for (const [key, {metas}] of Object.entries(frame.payload.joins)) {
          const s = sent.get(key);
          if (!s || s.node === c.node) continue;
          if (metas.some((m) => m.status === s.status)) latencies.push(t1 - s.t0);
        }
      });
      c.send("join", {room: c.room, name: c.name, status: "online"});
    }
    await eventually(() => clients.every((c) => Object.keys(c.state).length === Math.min(100, n)), "every client sees its whole room", 120000);
    for (const c of clients) c.fold = false;  // from here on the load generator only timestamps
    const joined = cluster.map((node) => procStat(node.proc.pid));
    const start = performance.now();
    const timers = clients.map((c, i) => setTimeout(function tick(k = 0) {
      const status = k % 2 === 0 ? "away" : "online";
      sent.set(c.name, {status, t0: performance.now(), node: c.node});
      c.send("status", {status});
      timers[i] = setTimeout(() => tick(k + 1), 10000);
    }, (i * 10000) / n));
    await new Promise((r) => setTimeout(r, seconds * 1000));
    timers.forEach(clearTimeout);
    const after = cluster.map((node) => procStat(node.proc.pid));
    const wall = (performance.now() - start) / 1000;
    const perNode = n / 3;
    for (let i = 0; i < 3; i++) {
      console.log(`clients: node-${i + 1}: RSS ${before[i].rssKiB} KiB idle -> ${joined[i].rssKiB} KiB with ${perNode.toFixed(0)} clients ` +
                  `(${((joined[i].rssKiB - before[i].rssKiB) * 1024 / perNode).toFixed(0)} B/client), ` +
                  `CPU ${(100 * (after[i].cpuS - joined[i].cpuS) / wall).toFixed(1)}% of a core over ${wall.toFixed(1)} s ` +
                  `(${(1e6 * (after[i].cpuS - joined[i].cpuS) / wall / perNode).toFixed(1)} us/s per client)`);
    }
    console.log(`clients: ${n} clients, ${(n / 10).toFixed(0)} changes/s, latency to other nodes' clients: ${summary(latencies)}`);
    clients.forEach((c) => c.close());
  } finally {
    cluster.stop();
  }
}

const [mode = "browser", a, b] = process.argv.slice(2);
if (mode === "browser") await browserLatency(Number(a ?? 200));
else if (mode === "clients") await clientsLoad(Number(a ?? 1000), Number(b ?? 30));
else {
  console.error("usage: presence-web-bench.mjs browser [CHANGES] | clients [N] [SECONDS]");
  process.exit(2);
}
process.exit(0);
