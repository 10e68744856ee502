// The web UI's rough edges, in headless Chromium against a real control plane (started by
// tests/ui_polish.rs with one real host, stacks `STACK` (services web and api) and `other`, and
// an environment DOOMED the user may read):
//
//   - links: the navigation, host, stack, service and container names are <a href>, Tab reaches
//     them, a middle click opens a new tab; graph nodes open their service (click and Enter);
//   - filter boxes on hosts, stacks, services and containers (and fast over 20,000 containers);
//   - scale: a typed number, bad input (the API's message), fast +/− clicks whose final scale is
//     exactly the number of clicks, checked against the API;
//   - the audit log reads as actions, its first row the API's newest entry;
//   - charts: one sample spans minutes not years, ticks in units with no two alike, a memory
//     limit only when the container has one, fewer time ticks at narrow widths;
//   - the environment on screen removed by another client, or by a restore: the UI says so and
//     shows Default;
//   - 390 px: navigation behind a burger, no page wider than the screen; 900 px as before.
//
//   CORRAL_UI_URL, CORRAL_UI_TOKEN (admin), CORRAL_UI_USER ("NAME:PASSWORD", owner of Default and
//   read-only in DOOMED), CORRAL_UI_HOST, CORRAL_UI_STACK, CORRAL_UI_DOOMED
//   CORRAL_UI_SCREENSHOTS=1  save docs/screenshots/*.png
//
// Prints "[polish] final scale N" (the Rust side checks the engine runs N) and exits 0 when every
// check passed.

import { T, apiClient, assert, launch, need, run, selectEnv, shot, step } from "./lib.mjs";

const URL_ = need("CORRAL_UI_URL").replace(/\/$/, "");
const TOKEN = need("CORRAL_UI_TOKEN");
const [USER, PASSWORD] = need("CORRAL_UI_USER").split(/:(.*)/s);
const HOST = need("CORRAL_UI_HOST");
const STACK = need("CORRAL_UI_STACK");
const DOOMED = need("CORRAL_UI_DOOMED");
// Created after the backup the script restores: the restore takes it away.
const LATER = "LATER";

const apiGet = apiClient(URL_, TOKEN);

/** A request as the admin: `body` is JSON, or bytes sent as they are. */
async function apiSend(method, path, body) {
  const headers = { Authorization: `Bearer ${TOKEN}` };
  if (body !== undefined) headers["Content-Type"] = body instanceof Uint8Array ? "application/octet-stream" : "application/json";
  const res = await fetch(`${URL_}/v1${path}`, { method, headers, body: body === undefined || body instanceof Uint8Array ? body : JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res;
}

/** Polls `f` until it returns a truthy value, or fails saying `what`. */
async function until(what, f, timeout = T) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    last = await f();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

const webScale = async () => (await apiGet(`/stacks/${STACK}/services/web`)).scale;

async function signIn(page) {
  await page.goto(`${URL_}/`);
  await page.getByTestId("login-form").waitFor({ timeout: T });
  await page.getByTestId("login-user").fill(USER);
  await page.getByTestId("login-password").fill(PASSWORD);
  await page.getByTestId("login-submit").click();
  // Attached, not visible: at 390 px the navigation is off screen until the burger opens it.
  await page.getByTestId("nav-hosts").waitFor({ state: "attached", timeout: T });
  await selectEnv(page, "Default");
}

/** A screenshot for the docs without the notifications and tooltips of earlier steps. */
async function cleanShot(page, name) {
  await page.locator(".mantine-Notification-root button").evaluateAll((buttons) => buttons.forEach((b) => b.click()));
  await page.mouse.move(0, 0);
  await shot(page, name);
}

/** Whether the element's box lies within the viewport horizontally. */
const onScreen = (locator) => locator.evaluate((el) => {
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.right > 0 && r.left < window.innerWidth;
});

/** The page is no wider than the window: nothing needs sideways scrolling but what scrolls inside. */
const fitsWidth = (page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);

async function wide(ctx) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));

  await step(`sign in as ${USER}`, () => signIn(page));

  await step("navigation items, the settings icon and host names are real links", async () => {
    await page.getByTestId("nav-hosts").click();
    await page.locator(`[data-testid=host-card][data-host="${HOST}"]`).waitFor({ timeout: T });
    const navHrefs = await page.locator("[data-testid=navbar] a").evaluateAll((as) => as.map((a) => a.getAttribute("href")));
    for (const want of ["#/dashboard", "#/hosts", "#/stacks", "#/members", "#/audit", "#/environments", "#/settings"]) {
      assert(navHrefs.includes(want), `the navigation links ${JSON.stringify(navHrefs)} lack ${want}`);
    }
    const settings = page.getByTestId("nav-settings");
    assert((await settings.evaluate((el) => el.tagName)) === "A" && (await settings.getAttribute("href")) === "#/settings", "the settings icon is a link");
    const hostLink = page.locator(`[data-testid=host-card][data-host="${HOST}"] [data-testid=host-link]`);
    assert((await hostLink.getAttribute("href")) === `#/hosts/${HOST}`, `host link: ${await hostLink.getAttribute("href")}`);
    // Every container chip on the card is a link to its page.
    const chips = await page.locator(`[data-testid=host-card][data-host="${HOST}"] a.chip`).evaluateAll((as) => as.map((a) => a.getAttribute("href")));
    assert(chips.length >= 2 && chips.every((h) => h.startsWith("#/containers/")), `container chips: ${JSON.stringify(chips)}`);
  });

  await step("Tab reaches the navigation and the host's name", async () => {
    await page.reload();
    await page.locator(`[data-testid=host-card][data-host="${HOST}"]`).waitFor({ timeout: T });
    const reached = [];
    for (let i = 0; i < 60; i++) {
      await page.keyboard.press("Tab");
      reached.push(await page.evaluate(() => document.activeElement?.getAttribute("href") ?? null));
    }
    for (const want of ["#/stacks", "#/audit", `#/hosts/${HOST}`]) {
      assert(reached.includes(want), `Tab never reached ${want}; it reached ${JSON.stringify(reached.filter(Boolean))}`);
    }
  });

  await step("a middle click on a navigation link opens the page in a new tab", async () => {
    const [tab] = await Promise.all([ctx.waitForEvent("page", { timeout: T }), page.getByTestId("nav-stacks").click({ button: "middle" })]);
    await tab.waitForLoadState();
    assert(tab.url().endsWith("#/stacks"), `the new tab opened ${tab.url()}`);
    await tab.getByTestId("stacks-table").waitFor({ timeout: T });
    await tab.close();
    assert(page.url().includes("#/hosts"), `the first tab stayed on the hosts page, not ${page.url()}`);
  });

  await step("the hosts filter narrows the cards and says when nothing matches", async () => {
    await page.getByTestId("hosts-filter").fill("no-such-host");
    await page.getByTestId("filter-no-match").waitFor({ timeout: T });
    assert((await page.getByTestId("host-card").count()) === 0, "no card for a filter nothing matches");
    await page.getByTestId("hosts-filter").fill(HOST);
    await page.locator(`[data-testid=host-card][data-host="${HOST}"]`).waitFor({ timeout: T });
    await page.getByTestId("hosts-filter").fill("");
  });

  await step("the stacks filter; stack and service names are links", async () => {
    await page.getByTestId("nav-stacks").click();
    await page.getByTestId("stacks-table").waitFor({ timeout: T });
    await page.getByTestId("stacks-filter").fill("oth");
    await until("only `other` listed", async () => JSON.stringify(await page.getByTestId("stack-link").allTextContents()) === '["other"]');
    await page.getByTestId("stacks-filter").fill("");
    const link = page.locator("[data-testid=stack-link]", { hasText: STACK });
    assert((await link.getAttribute("href")) === `#/stacks/${STACK}`, `stack link: ${await link.getAttribute("href")}`);
    await link.click();
    await page.locator("[data-testid=service-row][data-service=web]").waitFor({ timeout: T });
    const serviceHref = await page.locator("[data-testid=service-row][data-service=web] [data-testid=service-link]").getAttribute("href");
    assert(serviceHref === `#/stacks/${STACK}/services/web`, `service link: ${serviceHref}`);
  });

  await step("the services and containers filters; container rows link their service and host", async () => {
    await page.getByTestId("services-filter").fill("api");
    await until("only api listed", async () => JSON.stringify(await page.getByTestId("service-row").evaluateAll((rs) => rs.map((r) => r.dataset.service))) === '["api"]');
    await page.getByTestId("services-filter").fill("");
    await page.getByTestId("tab-containers").click();
    await page.getByTestId("container-row").first().waitFor({ timeout: T });
    await page.getByTestId("containers-filter").fill("api");
    await until("only the api container listed", async () => (await page.getByTestId("container-row").count()) === 1);
    const hrefs = await page.getByTestId("container-row").first().locator("a").evaluateAll((as) => as.map((a) => a.getAttribute("href")));
    const want = [`#/containers/${STACK}-api-1`, `#/stacks/${STACK}/services/api`, `#/hosts/${HOST}`];
    assert(JSON.stringify(hrefs) === JSON.stringify(want), `the row's links: ${JSON.stringify(hrefs)}`);
    await page.getByTestId("containers-filter").fill("");
  });

  await step("graph nodes are links to their service: a click and Enter open it", async () => {
    await page.getByTestId("tab-graph").click();
    const web = page.locator("[data-testid=graph-node][data-service=web]");
    await web.waitFor({ timeout: T });
    assert((await web.getAttribute("href")) === `#/stacks/${STACK}/services/web`, `node href: ${await web.getAttribute("href")}`);
    await web.click();
    await page.waitForURL(`**/#/stacks/${STACK}/services/web`, { timeout: T });
    await page.getByTestId("stats-panel").waitFor({ timeout: T });
    await page.goBack();
    await page.locator("[data-testid=graph-node][data-service=api]").waitFor({ timeout: T });
    // From the Graph tab, Tab reaches a node; Enter follows it.
    await page.getByTestId("tab-graph").focus();
    let onNode = null;
    for (let i = 0; i < 30 && !onNode; i++) {
      await page.keyboard.press("Tab");
      onNode = await page.evaluate(() => document.activeElement?.closest("[data-testid=graph-node]")?.getAttribute("data-service") ?? null);
    }
    assert(onNode, "Tab never reached a graph node");
    await page.keyboard.press("Enter");
    await page.waitForURL(`**/#/stacks/${STACK}/services/${onNode}`, { timeout: T });
  });

  await step("scale: a typed number is sent; bad input says why and changes nothing", async () => {
    await page.goto(`${URL_}/#/stacks/${STACK}`);
    const row = page.locator("[data-testid=service-row][data-service=web]");
    await row.waitFor({ timeout: T });
    const input = row.getByTestId("scale");
    await input.fill("3");
    await input.press("Enter");
    await until("the API's scale to be 3", async () => (await webScale()) === 3);
    await until("the row to show 3", async () => (await input.inputValue()) === "3" && (await row.getByTestId("scale-control").getAttribute("data-scale")) === "3");
    await input.fill("-1");
    await input.press("Enter");
    await page.getByText("invalid scale -1: it must be between 0 and 1000").first().waitFor({ timeout: T });
    await input.fill("lots");
    await input.press("Enter");
    await page.getByText('"lots" is not a whole number').first().waitFor({ timeout: T });
    await until("the row to show 3 again", async () => (await input.inputValue()) === "3");
    assert((await webScale()) === 3, "bad input left the scale at 3");
  });

  let final = 0;
  await step("scale: fast + and − clicks all count, and the API ends at start ± clicks", async () => {
    const row = page.locator("[data-testid=service-row][data-service=web]");
    const up = row.getByTestId("scale-up");
    const down = row.getByTestId("scale-down");
    const start = await webScale();
    // Clicks slower than the debounce (each goes out while the list still shows the old value),
    // then a burst faster than any round trip.
    for (let i = 0; i < 3; i++) {
      await up.click();
      await page.waitForTimeout(300);
    }
    for (let i = 0; i < 4; i++) await up.click({ delay: 0 });
    await until(`the API's scale to be ${start + 7}`, async () => (await webScale()) === start + 7);
    for (let i = 0; i < 6; i++) await down.click({ delay: 0 });
    final = start + 7 - 6;
    await until(`the API's scale to be ${final}`, async () => (await webScale()) === final);
    // Nothing late overrides it, and the row settles on it.
    await page.waitForTimeout(1500);
    assert((await webScale()) === final, `the scale moved after the clicks to ${await webScale()}`);
    await until(`the row to show ${final}`, async () => (await row.getByTestId("scale").inputValue()) === String(final) && (await row.getByTestId("scale-control").getAttribute("data-target")) === "");
    console.log(`[polish] final scale ${final}`);
    await cleanShot(page, "layout-1440-stack");
  });

  await step("the audit log reads as actions, newest first as the API has it", async () => {
    await page.getByTestId("nav-audit").click();
    await page.getByTestId("audit-row").first().waitFor({ timeout: T });
    const newest = (await apiGet("/audit?limit=1", "Default"))[0];
    await until("the first row to be the API's newest entry", async () => (await page.getByTestId("audit-summary").first().textContent()) === newest.summary);
    const summaries = await page.getByTestId("audit-summary").allTextContents();
    for (const said of [`${USER} scaled ${STACK}/web to ${final}`, `${USER} scaled ${STACK}/web to 3`, `${USER} tried to scale ${STACK}/web to -1`]) {
      assert(summaries.includes(said), `the audit log does not say ${JSON.stringify(said)}: ${JSON.stringify(summaries.slice(0, 20))}`);
    }
    assert(!summaries.some((s) => /\b(PUT|POST|DELETE) \/v1\//.test(s)), `raw requests in the audit log: ${JSON.stringify(summaries.filter((s) => /\/v1\//.test(s)))}`);
    await cleanShot(page, "audit-actions");
    await page.getByTestId("audit-filter").fill("tried");
    await until("only refusals listed", async () => (await page.getByTestId("audit-summary").allTextContents()).every((s) => s.includes("tried")));
    await page.getByTestId("audit-filter").fill("");
  });

  await step("charts: one sample spans minutes, ticks read in units with no two alike, no limit without one", async () => {
    const container = `${STACK}-web-1`;
    const hostMemory = (await apiGet(`/hosts/${HOST}`, "Default")).memory_bytes;
    let limit = hostMemory;
    const now = Math.floor(Date.now() / 1000);
    const statsUrl = (url) => url.pathname === `/v1/containers/${container}/stats`;
    await page.route(statsUrl, (route) =>
      route.fulfill({
        contentType: "application/json",
        body: JSON.stringify({
          kind: "container", name: container, from: now - 900, to: now, step_seconds: 5, resolution: "raw",
          points: [{ ts: now - 5, cpu_percent: 0.02, memory_bytes: 3.5 * 2 ** 20, memory_limit_bytes: limit, network_rx_bytes_per_second: 300, network_tx_bytes_per_second: 120, io_read_bytes_per_second: 0, io_write_bytes_per_second: 0 }],
        }),
      }),
    );
    await page.goto(`${URL_}/#/containers/${container}`);
    const chart = (title) => page.locator(`[data-testid=chart][data-title="${title}"]`);
    const cpu = chart("CPU (% of one core)");
    await until("the CPU chart's one sample", async () => (await page.getByTestId("stats-chart").getAttribute("data-points")) === "1" && (await cpu.getAttribute("data-x-span")));
    // uPlot alone stretches one sample over 86,400,000 seconds.
    await until("one sample to span a minute", async () => Number(await cpu.getAttribute("data-x-span")) === 60);
    const checkTicks = async (title, unit) => {
      const ticks = (await chart(title).getAttribute("data-y-ticks")).split("|");
      assert(new Set(ticks).size === ticks.length, `${title}: repeated ticks ${JSON.stringify(ticks)}`);
      assert(ticks.length >= 2 && ticks.filter((t) => t !== "0").every((t) => unit.test(t)), `${title}: ticks ${JSON.stringify(ticks)}`);
      return ticks;
    };
    const cpuTicks = await checkTicks("CPU (% of one core)", /^\d+(\.\d+)? %$/);
    assert(!cpuTicks.includes("0.0 %"), `CPU ticks ${JSON.stringify(cpuTicks)}`);
    await checkTicks("Memory", /^\d+ (KiB|MiB)$/);
    await checkTicks("Network", /^\d+ (B|KiB)\/s$/);
    assert((await chart("Memory").getAttribute("data-series")) === "used", `memory series without a limit: ${await chart("Memory").getAttribute("data-series")}`);
    await page.getByTestId("stats-panel").scrollIntoViewIfNeeded();
    await cleanShot(page, "chart-axes");
    // A container with a limit of its own gets the limit line.
    limit = 256 * 2 ** 20;
    await page.reload();
    await until("the limit line", async () => (await chart("Memory").getAttribute("data-series")) === "used|limit");
    await checkTicks("Memory", /^\d+ MiB$/);
    // Real samples from the agent: the same rules hold, and this container has no limit.
    await page.unroute(statsUrl);
    await page.reload();
    await page.waitForFunction(() => Number(document.querySelector("[data-testid=stats-chart]")?.getAttribute("data-points") ?? 0) > 0, null, { timeout: 60_000 });
    await until("real ticks", () => cpu.getAttribute("data-y-ticks"));
    await checkTicks("CPU (% of one core)", /^\d+(\.\d+)? %$/);
    await checkTicks("Memory", /^\d+ (B|KiB|MiB|GiB)$/);
    assert((await chart("Memory").getAttribute("data-series")) === "used", "a real container without a limit shows no limit line");
  });

  await step(`the environment on screen (${DOOMED}) removed elsewhere: the UI says so and shows Default`, async () => {
    await page.getByTestId("nav-stacks").click();
    await selectEnv(page, DOOMED);
    await until("the event stream of DOOMED to be live", async () => (await page.getByTestId("link-state").getAttribute("data-state")) === "live");
    await apiSend("DELETE", `/environments/${DOOMED}`);
    await page.getByText(`Environment ${DOOMED} is no longer available`).waitFor({ timeout: 15_000 });
    await page.waitForFunction(() => document.title === "Corral — Default", null, { timeout: T });
    await until("the stream of Default to be live", async () => (await page.getByTestId("link-state").getAttribute("data-state")) === "live");
    assert((await page.getByTestId("env-switcher").inputValue()) === "Default", "the switcher shows Default");
    await page.locator("[data-testid=stack-link]", { hasText: STACK }).waitFor({ timeout: T });
  });
}

/** An admin (the token link: it survives restores) shows an environment a restore takes away. */
async function restored(ctx) {
  await step(`a restore without the environment on screen (${LATER}): the UI says so and shows Default`, async () => {
    const backup = new Uint8Array(await (await apiSend("GET", "/backup")).arrayBuffer());
    await apiSend("POST", "/environments", { name: LATER });
    const page = await ctx.newPage();
    await page.goto(`${URL_}/#token=${TOKEN}`);
    await page.getByTestId("nav-hosts").waitFor({ timeout: T });
    await selectEnv(page, LATER);
    await until(`the event stream of ${LATER} to be live`, async () => (await page.getByTestId("link-state").getAttribute("data-state")) === "live");
    await apiSend("POST", "/restore", backup);
    await page.getByText(`Environment ${LATER} is no longer available`).waitFor({ timeout: 15_000 });
    await page.waitForFunction(() => document.title === "Corral — Default", null, { timeout: T });
    await until("the stream of Default to be live", async () => (await page.getByTestId("link-state").getAttribute("data-state")) === "live");
    await page.close();
  });
}

async function narrow(ctx) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  await step("390 px: sign in; the navigation hides behind a burger and the page fits", async () => {
    await signIn(page);
    await page.goto(`${URL_}/#/hosts`);
    await page.locator(`[data-testid=host-card][data-host="${HOST}"]`).waitFor({ timeout: T });
    assert(await page.getByTestId("nav-burger").isVisible(), "the burger shows at 390 px");
    assert(!(await onScreen(page.getByTestId("nav-stacks"))), "the navigation is hidden at 390 px");
    assert(await fitsWidth(page), "the hosts page fits 390 px");
    await shot(page, "layout-390-hosts");
  });

  await step("390 px: the burger opens the navigation; choosing a page closes it", async () => {
    await page.getByTestId("nav-burger").click();
    await until("the navigation on screen", () => onScreen(page.getByTestId("nav-stacks")));
    await shot(page, "layout-390-navigation");
    await page.getByTestId("nav-stacks").click();
    await page.waitForURL("**/#/stacks", { timeout: T });
    await until("the navigation hidden again", async () => !(await onScreen(page.getByTestId("nav-stacks"))));
    assert(await fitsWidth(page), "the stacks page fits 390 px");
  });

  await step("390 px: the stack's services scroll sideways inside their card, containers keep name, state and status", async () => {
    await page.locator("[data-testid=stack-link]", { hasText: STACK }).click();
    const row = page.locator("[data-testid=service-row][data-service=web]");
    await row.waitFor({ timeout: T });
    assert(await fitsWidth(page), "the stack page fits 390 px");
    const scrolls = await page.getByTestId("services-table").evaluate((t) => {
      let s = t.parentElement;
      while (s && !["auto", "scroll"].includes(getComputedStyle(s).overflowX)) s = s.parentElement;
      return s !== null && s.scrollWidth > s.clientWidth;
    });
    assert(scrolls, "the services table scrolls sideways inside its card");
    await shot(page, "layout-390-stack");
    await page.getByTestId("tab-containers").click();
    const first = page.getByTestId("container-row").first();
    await first.waitFor({ timeout: T });
    assert(await fitsWidth(page), "the containers tab fits 390 px");
    const shown = await first.evaluate((r) => [...r.children].filter((c) => getComputedStyle(c).display !== "none").map((c) => c.textContent));
    assert(shown.length === 3 && shown[0].startsWith(`${STACK}-`) && /running|pending|created/.test(shown[1]), `a row at 390 px shows ${JSON.stringify(shown)}`);
    await shot(page, "layout-390-containers");
  });

  await step("390 px: charts put fewer time ticks on a narrow plot, so labels do not overlap", async () => {
    await page.goto(`${URL_}/#/containers/${STACK}-web-1`);
    await page.waitForFunction(() => Number(document.querySelector("[data-testid=stats-chart]")?.getAttribute("data-points") ?? 0) > 0, null, { timeout: 60_000 });
    const charts = await page.getByTestId("chart").evaluateAll((cs) => cs.map((c) => ({ title: c.dataset.title, ticks: Number(c.dataset.xTicks), width: Number(c.dataset.plotWidth) })));
    assert(charts.length === 4, `charts: ${JSON.stringify(charts)}`);
    // A time label is about 50 px wide: at least 70 px apart, they never touch.
    for (const c of charts) assert(c.ticks >= 1 && (c.ticks - 1) * 70 <= c.width, `${c.title}: ${c.ticks} time labels on ${c.width} px`);
    assert(await fitsWidth(page), "the container page fits 390 px");
  });

  await step("900 px: the navigation is beside the page as before, without a burger", async () => {
    await page.setViewportSize({ width: 900, height: 800 });
    await page.goto(`${URL_}/#/stacks`);
    await page.getByTestId("stacks-table").waitFor({ timeout: T });
    assert(await onScreen(page.getByTestId("nav-stacks")), "the navigation shows at 900 px");
    assert(!(await page.getByTestId("nav-burger").isVisible()), "no burger at 900 px");
    await page.setViewportSize({ width: 1440, height: 900 });
    await shot(page, "layout-1440-stacks");
  });
}

/** The containers filter over 20,000 rows served through interception: typing stays fast. */
async function bigFilter(ctx) {
  const page = await ctx.newPage();
  const N = 20_000;
  const containers = Array.from({ length: N }, (_, i) => ({
    name: `big-svc${i % 40}-${Math.floor(i / 40) + 1}`, stack: "big", service: `svc${i % 40}`, instance: Math.floor(i / 40) + 1,
    host: `host-${i % 1000}`, host_state: "active", state: "running", status: "Up 3 minutes", reason: null, ip: `10.0.${(i >> 8) & 255}.${i & 255}`,
    ports: [], docker_id: null,
  }));
  await page.route((url) => url.pathname === "/v1/stacks/big/services", (r) => r.fulfill({ contentType: "application/json", body: "[]" }));
  await page.route((url) => url.pathname === "/v1/containers" && url.searchParams.get("stack") === "big", (r) => r.fulfill({ contentType: "application/json", body: JSON.stringify(containers) }));
  await step(`the containers filter over ${N} rows answers fast`, async () => {
    await page.goto(`${URL_}/#/stacks/big/containers`);
    await page.getByTestId("container-row").first().waitFor({ timeout: 60_000 });
    const t0 = Date.now();
    await page.getByTestId("containers-filter").fill("host-7 ");
    // host-7, host-70…79, host-700…799: 111 hosts of 1000, 20 containers each.
    await page.waitForFunction(() => document.querySelector("[data-testid=containers-filter-count]")?.textContent?.startsWith("2220 of 20000"), null, { timeout: 10_000 });
    const ms = Date.now() - t0;
    console.log(`[polish] filtering ${N} containers took ${ms} ms`);
    assert(ms < 3000, `filtering took ${ms} ms`);
    await shot(page, "filter-containers");
  });
}

await run(async () => {
  const ctx = await launch();
  await wide(ctx);
  await restored(await launch());
  await narrow(await launch({ width: 390, height: 844 }));
  await bigFilter(ctx);
});
