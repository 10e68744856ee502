// Failures shown where people look, in headless Chromium against a real cluster (started by
// tests/failures.rs): a pull's progress bar on the service row, a service whose image cannot be
// pulled in red with why, containers in red with their reason (port taken, exit code with the
// log's last line, engine error), a host whose agent goes silent reflected within 2 s, and
// relative times that keep ticking.
//
//   CORRAL_UI_URL        control plane URL serving the UI (required)
//   CORRAL_UI_TOKEN      admin token (required)
//   CORRAL_UI_STACK      the stack tests/failures.rs filled (services slow, typo, port, exit3,
//                        badcmd, spread)
//   CORRAL_UI_AGENT_PID  the agent of the host that runs one of spread's two containers: the
//                        script stops it (SIGSTOP) and lets it go on (SIGCONT)
//   CORRAL_UI_AGENT_HOST that host's name
//   CORRAL_UI_SCREENSHOTS=1  save docs/screenshots/pulling.png, failures.png, host-silent.png

import { T, assert, launch, need, run, shot, step } from "./lib.mjs";

const URL_ = need("CORRAL_UI_URL").replace(/\/$/, "");
const TOKEN = need("CORRAL_UI_TOKEN");
const STACK = need("CORRAL_UI_STACK");
const AGENT_PID = Number(need("CORRAL_UI_AGENT_PID"));
const AGENT_HOST = need("CORRAL_UI_AGENT_HOST");

const row = (page, service) => page.locator(`[data-testid=service-row][data-service="${service}"]`);
const containerRow = (page, name) => page.locator(`[data-testid=container-row]`).filter({ has: page.locator(`a[href$="/containers/${name}"]`) });

async function text(locator) {
  return (await locator.textContent()) ?? "";
}

/** Waits until `fn` returns something truthy, polling; fails naming `what`. */
async function until(what, fn, timeout = T) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeout) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

run(async () => {
  const ctx = await launch();
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));

  await step("open the stack's services", async () => {
    await page.goto(`${URL_}/#token=${TOKEN}`);
    await page.getByTestId("nav-hosts").waitFor({ timeout: T });
    await page.goto(`${URL_}/#/stacks/${encodeURIComponent(STACK)}`);
    await row(page, "spread").waitFor({ timeout: T });
  });

  await step("a service being pulled shows a progress bar per host that grows", async () => {
    // Read without waiting for the element: the bar goes away when the pull ends.
    const percent = () =>
      page.evaluate(() => {
        const bar = document.querySelector('[data-testid=service-row][data-service="slow"] [data-testid=pull-progress]');
        return bar ? Number(bar.getAttribute("data-percent")) : null;
      });
    const first = await until("the pull's progress bar", async () => {
      const p = await percent();
      return p === null ? null : { p };
    });
    assert((await row(page, "slow").getAttribute("data-status")) === "pulling", "the service's state is pulling");
    await shot(page, "pulling");
    const later = await until("the bar to grow", async () => {
      const p = await percent();
      return p !== null && p > first.p ? p : null;
    });
    assert(later <= 100, `percent ${later}`);
  });

  await step("a service whose image cannot be pulled is red, with why", async () => {
    const typo = row(page, "typo");
    await until("typo to be failing", async () => (await typo.getAttribute("data-status")) === "failing");
    const badge = typo.getByTestId("service-status");
    assert((await text(badge)) === "failing", `badge says ${await text(badge)}`);
    const color = await badge.evaluate((el) => getComputedStyle(el).backgroundColor);
    assert(/^rgb\((2[0-9]{2}), ([0-9]{1,2}), ([0-9]{1,2})\)$/.test(color), `the failing badge is red, not ${color}`);
    const reason = await text(typo.getByTestId("service-reason"));
    assert(reason.includes("cannot pull") && reason.includes("image not found in the registry") && reason.includes("manifest unknown"), `typo's reason: ${reason}`);
    assert((await row(page, "spread").getAttribute("data-status")) === "active", "a healthy service stays green");
  });

  await step("containers that do not run are red, each with its reason", async () => {
    await page.getByTestId("tab-containers").click();
    await page.getByTestId("containers-scroll").waitFor({ timeout: T });
    const want = {
      [`${STACK}-port-1`]: "host port 18556 is already taken on this host",
      [`${STACK}-exit3-1`]: "code 3: config file /etc/app.conf is missing",
      [`${STACK}-badcmd-1`]: "engine error",
      [`${STACK}-typo-1`]: "image not found in the registry",
    };
    for (const [name, words] of Object.entries(want)) {
      const r = containerRow(page, name);
      await until(`${name} to say ${words}`, async () => (await r.count()) > 0 && (await r.getAttribute("data-failing")) === "true" && (await text(r.getByTestId("container-reason"))).includes(words));
      const cls = await r.getByTestId("container-reason").getAttribute("class");
      assert(cls.includes("bad"), `${name}'s reason is shown as a failure (${cls})`);
    }
    const loop = await text(containerRow(page, `${STACK}-exit3-1`).getByTestId("container-reason"));
    await until("the exit to be called a crash loop", async () => /crash-looping: \d+ restarts in the last minute/.test(await text(containerRow(page, `${STACK}-exit3-1`).getByTestId("container-reason"))));
    console.log(`[ui]    exit3 said: ${loop}`);
    await shot(page, "failures");
  });

  await step("a container's page shows the last lines it printed", async () => {
    await containerRow(page, `${STACK}-exit3-1`).locator("a").first().click();
    const log = page.getByTestId("exit-log");
    await log.waitFor({ timeout: T });
    assert((await text(log)).includes("config file /etc/app.conf is missing"), `exit log: ${await text(log)}`);
    assert((await text(page.getByTestId("container-reason"))).includes("code 3"), "the reason names the code");
  });

  let stoppedAt = 0;
  await step(`a host whose agent goes silent shows within 2 s (SIGSTOP ${AGENT_HOST}'s agent)`, async () => {
    await page.goto(`${URL_}/#/stacks/${encodeURIComponent(STACK)}`);
    const spread = row(page, "spread");
    await until("spread to be active", async () => (await spread.getAttribute("data-status")) === "active");
    stoppedAt = Date.now();
    process.kill(AGENT_PID, "SIGSTOP");
    await until("spread to be degraded", async () => (await spread.getAttribute("data-status")) === "degraded", 10_000);
    const took = Date.now() - stoppedAt;
    console.log(`[ui]    spread showed degraded ${took} ms after the agent stopped`);
    // 1.5 s of silence, then the event stream and one fetch: a little over, seen in the browser.
    assert(took < 2_500, `took ${took} ms`);
    const running = await text(spread.getByTestId("service-running"));
    assert(running.startsWith("1/2"), `running: ${running}`);
    assert((await text(spread.getByTestId("service-reason"))).includes("not responding"), "the reason names the host");
    await shot(page, "host-silent");
  });

  await step("relative times keep ticking (the silent host, once disconnected)", async () => {
    try {
      await page.getByTestId("nav-hosts").click();
      const card = page.locator(`[data-testid=host-card][data-host="${AGENT_HOST}"]`);
      const since = async () => text(card);
      await until("the host to be disconnected", async () => (await since()).includes("disconnected since"), 15_000);
      const seconds = async () => Number((/disconnected since (\d+) s ago/.exec(await since()) ?? [])[1]);
      const a = await until("a time in seconds", seconds);
      await page.waitForTimeout(2_200);
      const b = await seconds();
      assert(b >= a + 2, `the time went from ${a} s to ${b} s ago without a reload`);
    } finally {
      process.kill(AGENT_PID, "SIGCONT");
    }
  });
});
