// A minimal W3C WebDriver client (fetch only) for tauri-driver, so the end-to-end test
// needs no large test framework. Waits poll until a condition holds or a deadline passes;
// nothing asserts on durations.
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";

/** How long a wait may take before the test fails (E2E_TIMEOUT_MS, default 60 s): generous,
 * because a cold, busy 2-core CI machine starts WebKit slowly; a passing run never waits
 * for it, since every wait ends as soon as its condition holds. */
export const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS) || 60000;

/** `n` distinct free loopback ports (all held open together while choosing). */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      servers.push(await new Promise((res, rej) => {
        const s = createServer().once("error", rej).listen(0, "127.0.0.1", () => res(s));
      }));
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

export class Session {
  constructor(base, id) {
    this.base = base;
    this.id = id;
  }

  static async start(base, capabilities) {
    const r = await raw(base, "POST", "/session", { capabilities: { alwaysMatch: capabilities } });
    return new Session(base, r.sessionId);
  }

  cmd(method, path, body) {
    return raw(this.base, method, `/session/${this.id}${path}`, body);
  }

  async quit() {
    await this.cmd("DELETE", "").catch(() => {});
  }

  exec(script, ...args) {
    return this.cmd("POST", "/execute/sync", { script, args });
  }

  async find(css) {
    const r = await this.cmd("POST", "/element", { using: "css selector", value: css });
    return r[ELEMENT];
  }

  /** Waits until `css` matches a displayed element and returns it. */
  async waitFor(css, what = css, timeoutMs = TIMEOUT) {
    return this.until(async () => {
      const els = await this.cmd("POST", "/elements", { using: "css selector", value: css });
      for (const e of els) {
        if (await this.cmd("GET", `/element/${e[ELEMENT]}/displayed`).catch(() => false)) return e[ELEMENT];
      }
      return null;
    }, what, timeoutMs);
  }

  /** Polls `f` until it returns a truthy value. */
  async until(f, what, timeoutMs = TIMEOUT) {
    const end = Date.now() + timeoutMs;
    let last;
    for (;;) {
      try {
        const v = await f();
        if (v) return v;
      } catch (e) {
        last = e;
      }
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ": " + last.message : ""}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  async click(css) {
    const el = await this.waitFor(css);
    await this.exec("arguments[0].scrollIntoView({block: 'center'})", { [ELEMENT]: el });
    await this.cmd("POST", `/element/${el}/click`, {});
  }

  /** Clicks the first button or link whose text contains `text`. */
  async clickText(text, css = "button, a") {
    const el = await this.until(
      () => this.exec(
        `return [...document.querySelectorAll(arguments[1])].find(e => e.offsetParent !== null && e.textContent.includes(arguments[0])) || null`,
        text, css,
      ),
      `"${text}"`,
    );
    await this.exec("arguments[0].scrollIntoView({block: 'center'})", el);
    await this.cmd("POST", `/element/${el[ELEMENT]}/click`, {});
  }

  /** Types into an input: focuses it, sets the text and fires the input events the UI
   * listens to. (WebKitWebDriver's element clear/send-keys hang under Xvfb without a window
   * manager, so the text is set from script; clicks stay real.) */
  async type(css, text) {
    const el = await this.waitFor(css);
    await this.exec(
      `const e = arguments[0]; e.focus(); e.value = arguments[1];
       e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true}));`,
      { [ELEMENT]: el }, text,
    );
  }

  /** Sets an input's value (date pickers) and fires the events the UI listens to. */
  async set(css, value) {
    const el = await this.waitFor(css);
    await this.exec(
      `const e = arguments[0]; e.value = arguments[1];
       e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true}));`,
      { [ELEMENT]: el }, value,
    );
  }

  async select(css, value) {
    await this.set(css, value);
  }

  async text(css = "body") {
    const el = await this.waitFor(css);
    return this.cmd("GET", `/element/${el}/text`);
  }

  /** Waits until the page text contains `s`. */
  async waitText(s, timeoutMs = TIMEOUT) {
    return this.until(async () => (await this.exec("return document.body.innerText")).includes(s), `text "${s}"`, timeoutMs);
  }

  go(hash) {
    return this.exec("location.hash = arguments[0]", hash);
  }

  async screenshot(path) {
    const b64 = await raw(this.base, "GET", `/session/${this.id}/screenshot`, undefined, 20000);
    writeFileSync(path, Buffer.from(b64, "base64"));
  }
}

async function raw(base, method, path, body, timeoutMs = Math.max(90000, 2 * TIMEOUT)) {
  const r = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j.value ?? j)}`);
  return j.value;
}
