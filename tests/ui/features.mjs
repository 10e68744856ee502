// What a user does from the web UI beyond creating things, in headless Chromium against a real
// control plane that speaks TLS on the LAN and plain HTTP on loopback (started by
// tests/ui_features.rs, with one real host): the browser uses the loopback URL, as the one printed
// at start, and every check on a container asks its engine itself (`docker inspect`).
//
//   CORRAL_UI_URL       the plain loopback URL of the control plane (required)
//   CORRAL_UI_TOKEN     admin token (required)
//   CORRAL_UI_ENGINE    the Docker endpoint of the host running the stack (required)
//   CORRAL_UI_STACK     a stack with a container service `web` of scale 2 (GREETING=hello)
//   CORRAL_UI_SCREENSHOTS=1  save docs/screenshots/*.png
//
// Exits 0 when every check passed; otherwise prints what failed and exits 1.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { T, apiClient, assert, fieldErrorText, launch, need, run, shot, step, waitInvalid } from "./lib.mjs";

const URL_ = need("CORRAL_UI_URL").replace(/\/$/, "");
const TOKEN = need("CORRAL_UI_TOKEN");
const ENGINE = need("CORRAL_UI_ENGINE");
const STACK = process.env.CORRAL_UI_STACK ?? "feat";
const SERVICE = "web";
const ADMIN2 = "feat-admin";
const ADMIN2_PASSWORD = "restores are serious business";
const READER = "feat-reader";
const READER_PASSWORD = "looks but never touches";

const apiGet = apiClient(URL_, TOKEN);
const tmp = mkdtempSync(join(tmpdir(), "corral-ui-features-"));

/** A change through the API as the admin (what the test sets up around the browser). */
async function apiSend(method, path, body) {
  const res = await fetch(`${URL_}/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : res.json();
}

/** What the engine itself says about a container: {id, running, startedAt, env}. */
function inspect(name) {
  const [c] = JSON.parse(execFileSync("docker", ["-H", ENGINE, "inspect", name], { encoding: "utf8" }));
  return { id: c.Id, running: c.State.Running, startedAt: c.State.StartedAt, env: c.Config.Env };
}

/** Polls `check` (sync or async) until it returns something truthy; fails after T. */
async function until(what, check) {
  const deadline = Date.now() + T;
  for (;;) {
    try {
      const got = await check();
      if (got) return got;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const isLoopback = (url) => /^https?:\/\/(127\.|localhost|\[::1\])/.test(url);

async function features(ctx) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  const c1 = `${STACK}-${SERVICE}-1`;

  await step("open the UI through the loopback URL with the token link", async () => {
    await page.goto(`${URL_}/#token=${TOKEN}`);
    await page.getByTestId("nav-hosts").waitFor({ timeout: T });
    await page.getByTestId("link-state").and(page.locator("[data-state=live]")).waitFor({ timeout: T });
  });

  await step("the event stream was opened with a single-use ticket, never with the token in its URL", async () => {
    assert(sockets.length > 0, "no WebSocket was opened");
    for (const url of sockets) {
      assert(!url.includes(TOKEN) && !/[?&]token=/.test(url), `a WebSocket URL carries the token: ${url}`);
      assert(/[?&]ticket=corral_t_/.test(url), `a WebSocket URL without a ticket: ${url}`);
    }
  });

  await step("the UI's scripts and styles arrive compressed, and come from the cache on the next visit", async () => {
    const assets = () =>
      page.evaluate(() =>
        performance
          .getEntriesByType("resource")
          .filter((e) => e.name.includes("/assets/"))
          .map((e) => ({ name: e.name.split("/").pop(), encoded: e.encodedBodySize, decoded: e.decodedBodySize, transfer: e.transferSize })),
      );
    const first = await assets();
    assert(first.length >= 2, `assets loaded: ${JSON.stringify(first)}`);
    for (const a of first) assert(a.encoded > 0 && a.encoded * 2 < a.decoded, `${a.name} was not compressed: ${JSON.stringify(a)}`);
    const wire = first.reduce((n, a) => n + a.transfer, 0);
    const raw = first.reduce((n, a) => n + a.decoded, 0);
    console.log(`\n[ui] first load: ${wire} bytes over the wire for ${raw} bytes of scripts and styles (${first.map((a) => `${a.name} ${a.encoded}/${a.decoded}`).join(", ")})`);
    // A new visit (not a reload, which revalidates by its own rules); the token stays in the tab.
    await page.goto("about:blank");
    await page.goto(`${URL_}/#/hosts`);
    await page.getByTestId("nav-hosts").waitFor({ timeout: T });
    const again = await assets();
    for (const a of again) assert(a.transfer === 0, `${a.name} was fetched again instead of coming from the cache: ${JSON.stringify(a)}`);
    console.log(`[ui] next visit: ${again.reduce((n, a) => n + a.transfer, 0)} bytes of assets over the wire`);
  });

  let lanUrl;
  await step("Add Host, opened through the loopback URL, names the control plane's LAN address", async () => {
    await page.getByTestId("nav-hosts").click();
    await page.getByTestId("add-host").click();
    const command = (await page.getByTestId("join-command").textContent({ timeout: T })).trim();
    const api = await apiGet("/hosts/join-command");
    lanUrl = api.server_url;
    assert(!isLoopback(lanUrl) && lanUrl.startsWith("https://"), `the join command names ${lanUrl}`);
    assert(command === api.command && command.includes(`--server ${lanUrl} `), `Add Host shows: ${command}\nAPI: ${api.command}`);
    assert(!command.includes("127.0.0.1"), `the command names loopback: ${command}`);
    await shot(page, "add-host-lan");
    await page.keyboard.press("Escape");
  });

  await step("Settings: the agent endpoint is the LAN URL; an admin changes it (a bad URL is refused under the field)", async () => {
    await page.getByTestId("nav-settings").click();
    await until("the agent URL", async () => (await page.getByTestId("agent-url").textContent()).trim() === lanUrl);
    assert((await page.getByTestId("agent-url-source").textContent()).includes("this machine"), "the URL is said to be this machine's address");
    await page.getByTestId("agent-url-edit").click();
    await page.getByTestId("advertise-url").fill("ftp://corral.example");
    await page.getByTestId("advertise-url-save").click();
    await waitInvalid(page, "advertise-url");
    const err = await fieldErrorText(page, "advertise-url");
    assert(err.includes("invalid URL") && err.includes("http or https"), `the field says: ${err}`);
    assert((await apiGet("/settings")).advertise_url === null, "a refused URL changed the settings");
    const port = new URL(lanUrl).port;
    const wanted = `https://corral-ui.test:${port}`;
    await page.getByTestId("advertise-url").fill(wanted);
    await page.getByTestId("advertise-url-save").click();
    await until("the new agent URL", async () => (await page.getByTestId("agent-url").textContent()).trim() === wanted);
    const settings = await apiGet("/settings");
    assert(settings.agent_url === wanted && settings.agent_url_source === "settings", `the API says ${JSON.stringify(settings)}`);
    assert((await apiGet("/hosts/join-command")).server_url === wanted, "join commands name the new URL");
    await page.getByTestId("agent-url-edit").click();
    await shot(page, "settings-agent-url");
    await page.getByTestId("advertise-url-reset").click();
    await until("the detected URL again", async () => (await page.getByTestId("agent-url").textContent()).trim() === lanUrl);
    assert((await apiGet("/settings")).advertise_url === null, "the stored URL is forgotten");
  });

  const containerPage = async (name) => {
    await page.goto(`${URL_}/#/containers/${encodeURIComponent(name)}`);
    await page.getByTestId("container-actions").waitFor({ timeout: T });
  };
  const badge = async () => (await page.getByTestId("container-state").textContent()).trim();

  await step(`Restart on ${c1}: the engine restarts the same container`, async () => {
    const before = inspect(c1);
    await containerPage(c1);
    await page.getByTestId("container-restart").click();
    const after = await until("a new StartedAt on the engine", () => {
      const now = inspect(c1);
      return now.running && now.startedAt !== before.startedAt && now;
    });
    assert(after.id === before.id, "restarted, not recreated");
    await until("the page to say running", async () => (await badge()) === "running");
  });

  await step(`Stop on ${c1}: the engine stops it and the page says why it is not running; Start runs it again`, async () => {
    const before = inspect(c1);
    await page.getByTestId("container-stop").click();
    await until("the engine to stop it", () => !inspect(c1).running);
    await until("the page to say exited", async () => (await badge()) === "exited");
    await page.getByTestId("container-start").waitFor({ timeout: T });
    const details = await page.getByTestId("container-details").textContent();
    assert(details.includes("stopped on request"), `the details say: ${details}`);
    await page.mouse.move(0, 0);
    await shot(page, "container-actions");
    await page.getByTestId("container-start").click();
    await until("the engine to run it again", () => inspect(c1).running);
    assert(inspect(c1).id === before.id, "started, not recreated");
    await page.getByTestId("container-stop").waitFor({ timeout: T });
  });

  await step(`Remove on ${c1}: a new ${c1} replaces it on the engine`, async () => {
    const before = inspect(c1);
    await page.getByTestId("container-remove").click();
    await page.getByTestId("confirm-container-remove").click();
    const after = await until("a new container under the same name", () => {
      const now = inspect(c1);
      return now.id !== before.id && now.running && now;
    });
    await until("the page to show the new container", async () => (await page.getByTestId("container-details").textContent()).includes(after.id.slice(0, 12)));
  });

  await step("Edit the service: a bad variable is refused under its field; a good change rolls onto the engine", async () => {
    await page.goto(`${URL_}/#/stacks/${encodeURIComponent(STACK)}`);
    const row = page.locator(`[data-testid=service-row][data-service="${SERVICE}"]`);
    await row.getByTestId("service-edit").click();
    await page.getByTestId("upgrade-env").fill("GREETING=hello\nBROKEN");
    await page.getByTestId("upgrade-submit").click();
    await waitInvalid(page, "upgrade-env");
    const err = await fieldErrorText(page, "upgrade-env");
    assert(err.includes("BROKEN") && err.includes("KEY=VALUE"), `the field says: ${err}`);
    assert((await apiGet(`/stacks/${STACK}/services/${SERVICE}`)).revision === 1, "a refused edit changed the service");
    await shot(page, "service-edit");
    await page.getByTestId("upgrade-env").fill("GREETING=bonjour");
    await page.getByTestId("upgrade-submit").click();
    await page.getByTestId("upgrade-form").waitFor({ state: "detached", timeout: T });
    const svc = await apiGet(`/stacks/${STACK}/services/${SERVICE}`);
    assert(svc.revision === 2 && svc.env.join() === "GREETING=bonjour", `the API says ${JSON.stringify(svc)}`);
    for (const i of [1, 2]) {
      await until(`${STACK}-${SERVICE}-${i} to run with the new environment`, () => {
        const c = inspect(`${STACK}-${SERVICE}-${i}`);
        return c.running && c.env.includes("GREETING=bonjour");
      });
    }
  });

  let backupFile;
  await step("Settings: download a backup (a SQLite file of the whole control plane)", async () => {
    await page.getByTestId("nav-settings").click();
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: T }), page.getByTestId("backup-download").click()]);
    assert(/^corral-\d{8}-\d{6}\.db$/.test(download.suggestedFilename()), `saved as ${download.suggestedFilename()}`);
    backupFile = join(tmp, download.suggestedFilename());
    await download.saveAs(backupFile);
    const head = readFileSync(backupFile).subarray(0, 16).toString("latin1");
    assert(head === "SQLite format 3\u0000", `not a SQLite file: ${JSON.stringify(head)}`);
    await shot(page, "settings-backup");
  });

  // Made after the backup: the restore takes them away again.
  await apiSend("POST", "/stacks", { name: "after-backup" });
  await apiSend("POST", "/users", { name: ADMIN2, password: ADMIN2_PASSWORD, admin: true });
  await apiSend("POST", "/users", { name: READER, password: READER_PASSWORD });
  await apiSend("POST", "/members", { name: READER, role: "read-only" });

  const signIn = async (user, password) => {
    const other = await launch();
    const p = await other.newPage();
    await p.goto(URL_);
    await p.getByTestId("login-form").waitFor({ timeout: T });
    await p.getByTestId("login-user").fill(user);
    await p.getByTestId("login-password").fill(password);
    await p.getByTestId("login-submit").click();
    await p.getByTestId("nav-hosts").waitFor({ timeout: T });
    return p;
  };

  await step("a read-only user sees the agent endpoint, but no backup, no restore, no change, and no container actions", async () => {
    const p = await signIn(READER, READER_PASSWORD);
    const own = [];
    p.on("websocket", (ws) => own.push(ws.url()));
    await p.getByTestId("nav-settings").click();
    await p.getByTestId("agent-url").waitFor({ timeout: T });
    assert((await p.getByTestId("backup-restore").count()) === 0 && (await p.getByTestId("agent-url-edit").count()) === 0, "a read-only user is offered admin settings");
    await p.goto(`${URL_}/#/containers/${encodeURIComponent(c1)}`);
    await p.getByTestId("container-actions").waitFor({ timeout: T });
    for (const id of ["container-restart", "container-stop", "container-remove"]) assert(await p.getByTestId(id).isDisabled(), `${id} is offered to a read-only user`);
    // Signed in with the cookie, the browser needs no ticket.
    await until("the container's log stream", () => own.some((u) => u.includes("/logs")));
    assert(own.every((u) => !u.includes("ticket=")), `a cookie session used tickets: ${own.join(" ")}`);
    await p.context().close();
  });

  await step("Restore a file that is no backup: refused, saying why, nothing changed", async () => {
    const junk = join(tmp, "not-a-backup.db");
    writeFileSync(junk, "this is not a database\n".repeat(100));
    await page.locator("input[type=file]").setInputFiles(junk);
    await page.getByTestId("restore-submit").click();
    const refused = await page.getByTestId("restore-refused").textContent({ timeout: T });
    assert(/not a (Corral|SQLite)|cannot be restored/i.test(refused), `the refusal says: ${refused}`);
    assert((await apiGet("/stacks")).some((s) => s.name === "after-backup"), "a refused restore changed something");
  });

  await step(`Restore as ${ADMIN2}, signed in with a password: the lockout is explained, "Restore anyway" restores`, async () => {
    const p = await signIn(ADMIN2, ADMIN2_PASSWORD);
    await p.getByTestId("nav-settings").click();
    await p.locator("input[type=file]").setInputFiles(backupFile);
    await p.getByTestId("restore-submit").click();
    const why = await p.getByTestId("restore-lockout").textContent({ timeout: T });
    assert(why.includes("your login session is not in the backup") && why.includes("Restore anyway"), `the lockout says: ${why}`);
    assert((await apiGet("/stacks")).some((s) => s.name === "after-backup"), "a refused restore changed something");
    await p.mouse.move(0, 0);
    await shot(p, "restore-lockout");
    await p.getByTestId("restore-force").click();
    // The backup predates this user's session: the UI is signed out, back at the login page.
    await p.getByTestId("login-form").waitFor({ timeout: T });
    const stacks = (await apiGet("/stacks")).map((s) => s.name);
    assert(!stacks.includes("after-backup") && stacks.includes(STACK), `after the restore the API lists ${stacks.join(", ")}`);
    const users = (await apiGet("/users")).map((u) => u.name);
    assert(!users.includes(ADMIN2), `${ADMIN2} is still a user after restoring a backup made before it: ${users.join(", ")}`);
    await p.context().close();
  });

  await step("the token-link browser is still signed in after the restore and sees the restored state", async () => {
    await page.goto(`${URL_}/#/stacks`);
    await page.getByTestId("link-state").and(page.locator("[data-state=live]")).waitFor({ timeout: T });
    await until("the restored stacks", async () => (await page.locator("body").textContent()).includes(STACK));
    assert(!(await page.locator("body").textContent()).includes("after-backup"), "the UI still shows a stack the restore took away");
  });
}

run(async () => {
  const ctx = await launch();
  await features(ctx);
});
