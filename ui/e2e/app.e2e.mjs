// End-to-end test of the real Tauri app (tauri-driver + WebKitWebDriver under Xvfb), run by
// `cargo xtask e2e`. Env: APP_BIN (the app built with the UI embedded), SERVER_BIN (the sync
// server), SHOTS (screenshot directory), WORK (scratch directory), TAURI_DRIVER.
//
// Flow (issue 5): set up and unlock with a PIN; sign in to the sync server; with the server
// down, register a household and two members and record a pregnancy visit with a danger
// sign, which creates a referral (a visit draft survives the app being closed); start the
// server and see the app sync by itself; as the bidan, on a second app instance with its own
// store, see and answer the referral; back as the kader, see the feedback. Phone-size
// screenshots of every main screen in Bahasa Indonesia and English.
import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { Session, freePorts, TIMEOUT } from "./webdriver.mjs";

const APP = process.env.APP_BIN;
const SHOTS = process.env.SHOTS;
const WORK = process.env.WORK;
const DRIVER = process.env.TAURI_DRIVER || "tauri-driver";
const PIN = "246810";
const SERVER = process.env.SERVER_BIN;
const PASSWORD = "rahasia-kunjung-1";
const POSYANDU = "PSY-MELATI";

for (const d of [SHOTS, WORK]) {
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
}
const kaderDir = join(WORK, "kader");
const bidanDir = join(WORK, "bidan");
const serverDb = `sqlite:${join(WORK, "server.db")}`;

// ---- the sync server ---------------------------------------------------------------
function admin(...args) {
  const r = spawnSync(SERVER, ["--db", serverDb, ...args], { env: { ...process.env, KUNJUNG_PASSWORD: PASSWORD } });
  if (r.status !== 0) throw new Error(`kunjung-server ${args.join(" ")}: ${r.stderr}`);
}
const [port] = await freePorts(1);
const serverUrl = `http://127.0.0.1:${port}`;
let server = null;
async function startServer() {
  server = spawn(SERVER, ["--db", serverDb, "serve", "--listen", `127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "inherit"] });
  const s = server;
  await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error("the sync server did not start")), TIMEOUT);
    s.stdout.on("data", (b) => String(b).includes("listening on") && (clearTimeout(t), res()));
    s.on("exit", (c) => (clearTimeout(t), rej(new Error(`server exited ${c}`))));
  });
}
async function stopServer() {
  const s = server;
  server = null;
  await new Promise((res) => {
    const t = setTimeout(() => s.kill("SIGKILL"), 10000);
    s.on("exit", () => (clearTimeout(t), res()));
    s.kill();
  });
}
admin("user", "add", "--username", "kader1", "--role", "kader", "--posyandu", POSYANDU);
admin("user", "add", "--username", "bidan1", "--role", "bidan", "--area", "32.14.01.2001");

// tauri-driver (and the WebKitWebDriver it runs) on free ports, so two runs on one machine
// cannot collide. A port taken between choosing and binding makes the driver exit: then try
// again with new ports.
let driver = null;
let BASE = "";
async function startDriver() {
  for (let attempt = 1; ; attempt++) {
    const [p, native] = await freePorts(2);
    // Its own process group: tauri-driver runs WebKitWebDriver, which runs the app; the
    // cleanup ends them all at once.
    const d = spawn(DRIVER, ["--port", String(p), "--native-port", String(native)], {
      stdio: ["ignore", "ignore", "inherit"],
      detached: true,
    });
    // The runner (xtask) ends this group too, should this script itself be killed.
    appendFileSync(join(WORK, "driver.pgid"), `${d.pid}\n`);
    let exited = false;
    d.on("exit", () => (exited = true));
    driver = d;
    BASE = `http://127.0.0.1:${p}`;
    const end = Date.now() + TIMEOUT;
    while (!exited && Date.now() < end) {
      try {
        if ((await fetch(BASE + "/status", { signal: AbortSignal.timeout(5000) })).ok) return;
      } catch {}
      await sleepUntilExit(d, 200);
    }
    killGroup(d);
    if (attempt >= 3) throw new Error(`tauri-driver did not start on 127.0.0.1:${p} (${exited ? "exited" : "no answer"})`);
    console.log(`  tauri-driver did not start on ${p}/${native}; trying other ports`);
  }
}
function killGroup(p, signal = "SIGTERM") {
  if (!p || p.exitCode !== null || p.signalCode !== null) {
    // The leader is gone, but WebKitWebDriver or the app may still be in its group.
    if (p?.pid) try { process.kill(-p.pid, "SIGKILL"); } catch {}
    return;
  }
  try {
    process.kill(-p.pid, signal);
  } catch {}
}
/** Waits `ms`, or less when `p` exits first (a condition, not a fixed pause). */
function sleepUntilExit(p, ms) {
  return new Promise((res) => {
    const t = setTimeout(res, ms);
    p.once("exit", () => { clearTimeout(t); res(); });
  });
}
let cleaned = false;
const cleanup = () => {
  if (cleaned) return;
  cleaned = true;
  killGroup(driver);
  // Whatever ignored SIGTERM (an app stuck in WebKit) is killed; `exit` handlers must be
  // synchronous, so the group gets SIGKILL right after.
  if (driver?.pid) try { process.kill(-driver.pid, "SIGKILL"); } catch {}
  if (server) try { server.kill("SIGKILL"); } catch {}
};
process.on("exit", cleanup);
for (const [sig, n] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]]) process.on(sig, () => { cleanup(); process.exit(128 + n); });
process.on("uncaughtException", (e) => { console.error(e); cleanup(); process.exit(1); });
process.on("unhandledRejection", (e) => { console.error(e); cleanup(); process.exit(1); });

async function open(dataDir) {
  const s = await Session.start(BASE, { "tauri:options": { application: APP, args: [`--data=${dataDir}`] } });
  await s.cmd("POST", "/window/rect", { width: 360, height: 740 }).catch(() => {});
  return s;
}

let n = 0;
async function shot(s, name) {
  n += 1;
  const file = join(SHOTS, `${String(n).padStart(2, "0")}-${name}.png`);
  // A screenshot is evidence, not an assertion: one that WebKitWebDriver does not deliver
  // (seen right after a navigation under Xvfb) is retried once, then reported and skipped.
  for (let i = 0; i < 2; i++) {
    try {
      await s.screenshot(file);
      console.log(`  screenshot ${file}`);
      return;
    } catch (e) {
      console.log(`  screenshot ${name} failed (${e.message})`);
    }
  }
}

async function unlock(s) {
  await s.type("#pin", PIN);
  await s.click("[data-testid=unlock-submit]");
  await s.waitFor("[data-testid=sync-bar]");
}

/** Waits until the sync bar shows `phase` (and `pending` when given). */
async function syncBar(s, phase, pending, timeoutMs = TIMEOUT) {
  return s.until(async () => {
    const d = await s.exec("const e = document.querySelector('[data-testid=sync-bar]'); return e ? {...e.dataset} : null");
    return d && d.phase === phase && (pending === undefined || Number(d.pending) === pending) ? d : null;
  }, `sync bar ${phase}${pending === undefined ? "" : " " + pending}`, timeoutMs);
}

async function signIn(s, account) {
  await s.go("#/settings");
  await s.type("#server", serverUrl);
  await s.type("#account", account);
  await s.type("#password", PASSWORD);
  await s.click("[data-testid=sign-in]");
  await s.waitFor("[data-testid=signed-in]");
}

async function setup(s, user) {
  await s.waitFor("#user");
  await s.clickText("Bahasa Indonesia");
  await s.type("#user", user);
  await s.type("#pin", PIN);
  await s.type("#pin2", PIN);
  await s.click("[data-testid=unlock-submit]");
  await s.waitFor("[data-testid=sync-bar]");
}

async function step(name, f) {
  const t0 = Date.now();
  await f();
  console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

await startDriver();
let s = await open(kaderDir);
let householdUrl = "";
let sitiId = "";

try {
  await step("first run: set up a PIN and open the store", async () => {
    await s.waitFor("#user");
    await s.clickText("Bahasa Indonesia");
    await shot(s, "id-setup");
    await s.type("#user", "kader-siti");
    await s.type("#pin", "123");
    await s.type("#pin2", "123");
    await s.click("[data-testid=unlock-submit]");
    await s.waitText("PIN minimal 6 angka");
    await s.type("#pin", PIN);
    await s.type("#pin2", PIN);
    await s.click("[data-testid=unlock-submit]");
    await s.waitFor("[data-testid=sync-bar]");
    await s.waitText("Belum ada rumah tangga");
    await shot(s, "id-households-empty");
  });

  await step("first sign-in to the sync server", async () => {
    await startServer();
    await signIn(s, "kader1");
    await syncBar(s, "verified", 0);
    await shot(s, "id-settings");
    await stopServer();
  });

  await step("register a household", async () => {
    await s.go("#/households");
    await s.click("[data-testid=add-household]");
    await s.type("#area", "32.14.01");
    await s.type("#rt", "3");
    await s.type("#rw", "1");
    await s.click("[data-testid=save-household]");
    await s.waitText("PP.KK.CC.DDDD");
    await s.type("#area", "32.14.01.2001");
    await s.type("#dusun", "Sukamaju");
    await s.type("#address", "Jl. Melati No. 7");
    await s.type("#posyandu", POSYANDU);
    await shot(s, "id-household-form");
    await s.click("[data-testid=save-household]");
    await s.waitFor("[data-testid=add-member]");
    householdUrl = await s.exec("return location.hash");
    assert.match(householdUrl, /^#\/household\/[0-9a-f-]{36}$/);
  });

  await step("add two members, with a soft NIK warning and a pregnancy", async () => {
    await s.click("[data-testid=add-member]");
    await s.type("#name", "Budi Santoso");
    await s.click("input[name=sex][value=M]");
    await s.set("#birth", "1990-05-02");
    await s.select("#relation", "head");
    await s.click("[data-testid=save-member]");
    await s.waitText("Budi Santoso");
    await s.click("[data-testid=add-member]");
    await s.type("#name", "Siti Aminah");
    await s.click("input[name=sex][value=F]");
    await s.type("#age", "31");
    await s.clickText("Pakai umur");
    await s.type("#nik", "32140155");
    await s.waitFor("[data-testid=nik-warning]");
    assert.match(await s.text("[data-testid=nik-warning]"), /16 angka/);
    await s.select("#relation", "spouse");
    await s.click("[data-testid=pregnant]");
    await s.set("#hpht", "2026-07-01");
    await shot(s, "id-member-form");
    await s.click("[data-testid=save-member]");
    await s.waitText("Siti Aminah");
    const members = await s.text("[data-testid=members]");
    assert.match(members, /Budi Santoso/);
    assert.match(members, /Ibu hamil/, "Siti's life stage is pregnancy");
    assert.match(members, /perkiraan/, "estimated birth date is marked");
    await shot(s, "id-household");
  });

  await step("the household list and search find it", async () => {
    await s.go("#/households");
    await s.waitText("Budi Santoso");
    await shot(s, "id-households");
    await s.type("[data-testid=search]", "siti");
    await s.waitText("1 hasil");
    await s.clickText("Siti Aminah", "a.item");
    await s.waitFor("[data-testid=add-member]");
  });

  await step("a visit draft survives closing the app", async () => {
    await s.click("[data-testid='visit-Siti Aminah']");
    await s.waitFor("[data-testid=danger-preg_bleeding]");
    sitiId = (await s.exec("return location.hash")).split("/").pop();
    await s.type("#w", "58,5");
    await s.type("#muac", "22");
    await s.click("[data-testid=danger-preg_bleeding]");
    await s.waitFor("[data-testid=draft-saved]");
    await s.quit(); // the app closes mid-form
    s = await open(kaderDir);
    await unlock(s);
    await s.go(`#/visit/${householdUrl.split("/").pop()}/${sitiId}`);
    await s.waitFor("[data-testid=draft-restored]");
    assert.equal(await s.exec("return document.querySelector('#w').value"), "58,5");
    assert.equal(await s.exec("return document.querySelector('[data-testid=danger-preg_bleeding]').checked"), true);
  });

  await step("record the pregnancy visit: the danger sign creates a referral", async () => {
    await s.waitText("risiko KEK");
    await shot(s, "id-visit-form");
    await s.click("[data-testid=save-visit]");
    await s.waitFor("[data-testid=flash]");
    assert.match(await s.text("[data-testid=flash]"), /Rujukan ke bidan dibuat/);
    const tl = await s.text("[data-testid=timeline]");
    assert.match(tl, /1 tanda bahaya/);
    assert.match(tl, /Baru/);
    await s.go("#/referrals");
    await s.waitFor("[data-testid=referral]");
    assert.match(await s.text("[data-testid=referral]"), /Perdarahan/);
    assert.equal(await s.text("[data-testid=referral-status]"), "Baru");
    await shot(s, "id-referrals");
    const bar = await syncBar(s, "offline");
    assert.ok(Number(bar.pending) > 0, "the changes wait for the server");
    assert.match(await s.text("[data-testid=sync-bar]"), /Offline · \d+ menunggu sinkron/);
  });

  await step("the server comes back: the app syncs by itself", async () => {
    await startServer();
    await syncBar(s, "verified", 0); // no button pressed
    assert.match(await s.text("[data-testid=sync-bar]"), /terverifikasi di server pukul/);
    await shot(s, "id-synced");
  });

  await step("the bidan, on a second app instance, answers the referral", async () => {
    await s.go("#/review");
    await s.waitText("Kunjungan baru (1)");
    await shot(s, "id-review");
    await s.quit();
    s = await open(bidanDir);
    await setup(s, "bidan-ani");
    await s.go("#/settings");
    await s.select("#role", "bidan");
    await signIn(s, "bidan1");
    await s.clickText("Simpan");
    await syncBar(s, "verified", 0);
    await s.go("#/referrals");
    await s.waitFor("[data-testid=referral]");
    assert.match(await s.text("[data-testid=referral]"), /Siti Aminah[\s\S]*Perdarahan/);
    await s.click("[data-testid=answer-referral]");
    await s.select("[data-testid=referral-status-select]", "examined");
    await s.type("[data-testid=referral-feedback-input]", "Sudah diperiksa, kontrol ke Pustu Kamis");
    await shot(s, "id-bidan-queue");
    await s.click("[data-testid=save-referral]");
    await s.waitFor("[data-testid=referral-feedback]");
    await syncBar(s, "verified", 0);
    await s.quit();
  });

  await step("back as the kader: the feedback has arrived", async () => {
    s = await open(kaderDir);
    await unlock(s);
    await s.go("#/referrals");
    await s.waitFor("[data-testid=referral-feedback]", "the bidan's feedback");
    assert.match(await s.text("[data-testid=referral-feedback]"), /kontrol ke Pustu Kamis/);
    assert.equal(await s.text("[data-testid=referral-status]"), "Sudah diperiksa");
    await shot(s, "id-referral-feedback");
  });

  await step("a child's growth chart", async () => {
    await s.go(householdUrl);
    await s.click("[data-testid=add-member]");
    await s.type("#name", "Ayu Lestari");
    await s.click("input[name=sex][value=F]");
    await s.set("#birth", "2025-09-10");
    await s.select("#relation", "child");
    await s.click("[data-testid=save-member]");
    await s.click("[data-testid='visit-Ayu Lestari']");
    await s.waitFor("#hc");
    // Very underweight (BB/U < −3 SD at 1–5 years): the weighing suggests a referral.
    await s.type("#w", "6,5");
    await s.type("#h", "74");
    await s.click("input[value=lying]");
    await s.click("[data-testid=save-visit]");
    await s.waitFor("[data-testid=flash]");
    assert.match(await s.text("[data-testid=flash]"), /Saran rujuk: .*−3 SD/);
    await s.clickText("Pertumbuhan");
    await s.waitText("BB/U");
    await s.waitFor("[data-testid=referral-suggestion]");
    assert.match(await s.text("[data-testid=referral-suggestion]"), /Saran rujuk ke bidan[\s\S]*< −3 SD/);
    await shot(s, "id-growth");
  });

  await step("who changed what, when: the household's history", async () => {
    await s.go(householdUrl);
    await s.click("[data-testid=open-history]");
    await s.waitFor("[data-testid=household-history]");
    await s.select("[data-testid=history-field]", `members/${sitiId}/name`);
    await s.until(async () => /Siti Aminah/.test(await s.text("[data-testid=field-history]")), "Siti's name history");
    assert.match(await s.text("[data-testid=field-history]"), /oleh kader-siti/);
    const all = await s.text("[data-testid=household-history]");
    assert.match(all, /Rujukan ditanggapi[\s\S]*oleh bidan-ani/, "the bidan's answer, synced in, with her name");
    assert.match(all, /Rumah tangga didaftarkan[\s\S]*oleh kader-siti/);
    await shot(s, "id-history");
  });

  await step("the puskesmas dashboard: this month's recap per posyandu and desa", async () => {
    await s.go("#/reports");
    await s.waitFor("[data-testid=dashboard-table]");
    const total = await s.text("[data-testid=dashboard-total]");
    // getText joins the figure and its label without a space in WebKit.
    assert.match(total, /^1\s*Rumah tangga/m, total);
    // Ayu was weighed this month, the one balita here: D/S 1/1.
    const table = await s.text("[data-testid=dashboard-table]");
    assert.match(table, /Partisipasi penimbangan D\/S\s*100%\s*1\/1/, table);
    assert.match(table, new RegExp(POSYANDU));
    await shot(s, "id-dashboard");
    await s.click("[data-testid=by-desa]");
    await s.until(async () => /32\.14\.01\.2001/.test(await s.text("[data-testid=dashboard-table]")), "grouped per desa");
    await s.select("[data-testid=dashboard-section]", "anc");
    await s.until(async () => /Cakupan K1/.test(await s.text("[data-testid=dashboard-table]")), "the ANC section");
    await shot(s, "id-dashboard-desa-anc");
  });

  await step("export the register: XLSX and FHIR files", async () => {
    await s.go("#/export");
    await s.click("[data-testid=export-submit]");
    await s.waitFor("[data-testid=export-done]");
    const xlsx = await s.text("[data-testid=export-path]");
    assert.match(xlsx, /kunjung-\d+-\d{4}-\d{2}-\d{8}-\d{6}\.xlsx$/);
    assert.ok(statSync(xlsx).size > 1000, "the workbook was written");
    assert.match(await s.text("[data-testid=export-done]"), /anggota: 3 baris/);
    await shot(s, "id-export");
    await s.click("[data-testid=fmt-fhir]");
    await s.click("[data-testid=export-submit]");
    await s.until(async () => /\.json$/.test(await s.text("[data-testid=export-path]")), "the FHIR export");
    const bundle = JSON.parse(readFileSync(await s.text("[data-testid=export-path]"), "utf8"));
    assert.equal(bundle.resourceType, "Bundle");
    assert.ok(bundle.entry.some((e) => e.resource.resourceType === "Patient"), "patients in the bundle");
  });

  await step("settings; then every main screen in English", async () => {
    await s.go("#/tasks");
    await s.waitText("Tugas");
    await shot(s, "id-tasks");
    await s.go("#/settings");
    await s.click("[data-testid=lang-en]");
    await s.waitText("Language");
    await shot(s, "en-settings");
    for (const [hash, text, name] of [
      ["#/households", "Households", "en-households"],
      [householdUrl, "Household members", "en-household"],
      [`#/visit/${householdUrl.split("/").pop()}/${sitiId}`, "Danger signs", "en-visit-form"],
      ["#/referrals", "Midwife's feedback", "en-referrals"],
      ["#/review", "Midwife review", "en-review"],
      ["#/tasks", "Tasks", "en-tasks"],
      ["#/reports", "Puskesmas dashboard", "en-dashboard"],
      ["#/export", "Export data", "en-export"],
      [householdUrl + "/history", "All changes", "en-history"],
    ]) {
      await s.go(hash);
      await s.waitText(text);
      await shot(s, name);
    }
    await s.go(householdUrl + "/member/new");
    await s.waitText("New member");
    await shot(s, "en-member-form");
    await s.go(householdUrl);
    await s.clickText("Growth");
    await s.waitText("Weight-for-age");
    await s.waitText("Suggested referral to the midwife");
    await shot(s, "en-growth");
    await s.go("#/settings");
    await s.clickText("Lock the app");
    await s.waitFor("#pin");
    await shot(s, "en-unlock");
    await s.type("#pin", "000000");
    await s.click("[data-testid=unlock-submit]");
    await s.waitText("Wrong PIN");
  });
  console.log("e2e: all steps passed");
} catch (e) {
  await shot(s, "failure").catch(() => {});
  throw e;
} finally {
  await s.quit();
  cleanup();
}
