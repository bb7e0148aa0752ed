// Cold start of the real app to a usable household list (issue 5 target: ≤ 1 s on a
// 20,000-household store), run by `cargo xtask appbench`. Env: APP_BIN, DATA (an encrypted
// store), PIN, RUNS, TAURI_DRIVER, WORK. Writes one JSON line per run to WORK/coldstart.jsonl:
// {launch_ms, unlock_ms, list_ms, page_ms, rows}:
//   launch_ms  process start → the PIN screen shown (WebDriver session start included);
//   unlock_ms  PIN submitted → the first page of the household list shown (Argon2id, open
//              the SQLCipher store, query, render);
//   list_ms    launch_ms + unlock_ms (the user's typing left out);
//   page_ms    in the webview: navigation start → list shown (performance.now()).
import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { Session, freePorts, TIMEOUT } from "./webdriver.mjs";

const { APP_BIN, DATA, PIN, WORK } = process.env;
const RUNS = Number(process.env.RUNS || 3);
mkdirSync(WORK, { recursive: true });

const [p, native] = await freePorts(2);
const driver = spawn(process.env.TAURI_DRIVER, ["--port", String(p), "--native-port", String(native)], {
  stdio: ["ignore", "ignore", "inherit"],
  detached: true,
});
appendFileSync(join(WORK, "driver.pgid"), `${driver.pid}\n`);
const kill = () => { try { process.kill(-driver.pid, "SIGKILL"); } catch {} };
process.on("exit", kill);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => { kill(); process.exit(1); });
const BASE = `http://127.0.0.1:${p}`;
const end = Date.now() + TIMEOUT;
for (;;) {
  try {
    if ((await fetch(BASE + "/status")).ok) break;
  } catch {}
  if (Date.now() > end) throw new Error("tauri-driver did not start");
  await new Promise((r) => setTimeout(r, 100));
}

try {
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const s = await Session.start(BASE, { "tauri:options": { application: APP_BIN, args: [`--data=${DATA}`] } });
    await s.waitFor("#pin");
    const t1 = performance.now();
    await s.type("#pin", PIN);
    const t2 = performance.now();
    await s.click("[data-testid=unlock-submit]");
    await s.waitFor("[data-testid=household-list] li a");
    const t3 = performance.now();
    const page = await s.exec("return [performance.now(), document.querySelectorAll('[data-testid=household-list] li').length]");
    const line = JSON.stringify({
      launch_ms: t1 - t0, unlock_ms: t3 - t2, list_ms: t1 - t0 + (t3 - t2), page_ms: page[0], rows: page[1],
    });
    console.log(`  run ${i + 1}: ${line}`);
    appendFileSync(join(WORK, "coldstart.jsonl"), line + "\n");
    await s.quit();
  }
} finally {
  kill();
}
