// Starts presence-web servers (real processes) for the web tests: a fresh secret in a temporary
// directory, ephemeral ports, each server's printed addresses read from its stdout.
//   const cluster = await startCluster(3);   // [{name, web, admin, gossip, proc, stderr()}]
//   ... cluster.stop();
import {spawn} from "node:child_process";
import {mkdtempSync, rmSync, writeFileSync} from "node:fs";
import {tmpdir} from "node:os";
import {join} from "node:path";
import {randomBytes} from "node:crypto";

export const binary = process.env.PRESENCE_WEB;
if (!binary) throw new Error("set PRESENCE_WEB to the presence-web binary (meson test does)");

function start(args, name) {
  const proc = spawn(binary, args, {stdio: ["ignore", "pipe", "pipe"]});
  let out = "";
  let err = "";
  proc.stderr.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 30 s: ${err}`)), 30000);
    proc.on("exit", (code) => reject(new Error(`${name} exited (${code}): ${err}`)));
    proc.stdout.on("data", (d) => {
      out += d;
      const web = /^web (\S+)/m.exec(out);
      const admin = /^admin (\S+)/m.exec(out);
      const gossip = /^gossip (\S+)/m.exec(out);
      if (web && admin && gossip) {
        clearTimeout(timer);
        resolve({name, web: web[1], admin: admin[1], gossip: gossip[1], proc, stderr: () => err});
      }
    });
  });
}

export async function startCluster(n) {
  const dir = mkdtempSync(join(tmpdir(), "presence-web-"));
  const secret = join(dir, "secret");
  writeFileSync(secret, randomBytes(32).toString("hex"));
  const nodes = [];
  const stop = () => {
    for (const node of nodes) node.proc.kill("SIGTERM");
    rmSync(dir, {recursive: true, force: true});
  };
  try {
    for (let i = 1; i <= n; i++) {
      const args = ["--name", `node-${i}`, "--secret-file", secret, "--web", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
      if (i > 1) args.push("--seed", nodes[0].gossip);
      nodes.push(await start(args, `node-${i}`));
    }
  } catch (e) {
    stop();
    throw e;
  }
  nodes.secret = secret;
  nodes.stop = stop;
  return nodes;
}

// Polls pred (may be async) every 20 ms until it holds; throws after `ms` with `what`.
export async function eventually(pred, what, ms = 30000) {
  const until = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
