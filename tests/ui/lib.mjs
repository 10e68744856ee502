// What the browser tests share: steps that print as they go, screenshots for the docs, the API
// seen from the test, Mantine's field errors, the environment switcher, and Chromium with a fresh
// profile per browser. A script hands its checks to `run`, which exits 0 when all passed.
//
//   CORRAL_UI_SCREENSHOTS=1  `shot` saves docs/screenshots/NAME.png
//   CORRAL_CHROMIUM          the browser to drive (default /usr/bin/chromium)

import { createRequire } from "node:module";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, "..", "..");
// playwright-core is a dev dependency of the UI (no browser download: the system Chromium runs).
const { chromium } = createRequire(join(root, "ui", "package.json"))("playwright-core");

/** How long any one wait may take. */
export const T = 30_000;
const SHOTS = process.env.CORRAL_UI_SCREENSHOTS === "1";

export function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
}

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

let stepNo = 0;
export async function step(name, fn) {
  stepNo++;
  const t0 = Date.now();
  process.stdout.write(`[ui] ${stepNo}. ${name} … `);
  await fn();
  console.log(`ok (${Date.now() - t0} ms)`);
}

export async function shot(page, name) {
  if (!SHOTS) return;
  const dir = join(root, "docs", "screenshots");
  mkdirSync(dir, { recursive: true });
  await page.waitForTimeout(300); // let transitions settle
  await page.screenshot({ path: join(dir, `${name}.png`) });
}

/** `GET /v1PATH` (in environment `env` when given) with the bearer `token`, as JSON. */
export function apiClient(url, token) {
  return async function apiGet(path, env) {
    const sep = path.includes("?") ? "&" : "?";
    const res = await fetch(`${url}/v1${path}${env ? `${sep}env=${encodeURIComponent(env)}` : ""}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return res.json();
  };
}

/** The text of the error Mantine shows under input `testId` (linked by aria-describedby). */
export async function fieldErrorText(page, testId) {
  const input = page.getByTestId(testId);
  return input.evaluate((el) => {
    const ids = (el.getAttribute("aria-describedby") ?? "").split(/\s+/).filter((id) => id.endsWith("-error"));
    return ids.map((id) => document.getElementById(id)?.textContent ?? "").join(" ");
  });
}

/** Waits until input `testId` is marked invalid (Mantine shows an error under it). */
export async function waitInvalid(page, testId) {
  await page.waitForFunction((id) => document.querySelector(`[data-testid=${id}]`)?.getAttribute("aria-invalid") === "true", testId, { timeout: T });
}

export async function selectEnv(page, env) {
  await page.getByTestId("env-switcher").click();
  await page.getByRole("option", { name: env, exact: true }).click();
  await page.waitForFunction((e) => document.title === `Corral — ${e}`, env, { timeout: T });
}

const userDataDirs = [];
const contexts = [];

/** A browser with a fresh profile of its own (its own cookies: its own session). */
export async function launch(viewport = { width: 1440, height: 900 }) {
  const dir = mkdtempSync(join(tmpdir(), "corral-ui-chromium-"));
  userDataDirs.push(dir);
  // A persistent context is how Playwright takes a fresh --user-data-dir of our choosing.
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CORRAL_CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    viewport,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  contexts.push(context);
  return context;
}

/** Runs `checks`, closes every browser `launch` opened, and exits 0 if they all passed. */
export async function run(checks) {
  let failed = false;
  try {
    await checks();
    console.log("[ui] all UI checks passed");
  } catch (e) {
    failed = true;
    console.log("FAILED");
    console.error(`[ui] ${e instanceof Error ? e.stack ?? e.message : e}`);
  }
  for (const context of contexts) await context.close().catch(() => {});
  for (const dir of userDataDirs) rmSync(dir, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
}
