// Drives the web UI in headless Chromium against a real control plane (started by tests/ui.rs),
// then runs a UI scale check on synthetic data served through request interception.
//
//   CORRAL_UI_URL      control plane URL serving the UI (required)
//   CORRAL_UI_TOKEN    admin token (required)
//   CORRAL_UI_ENVS     "OPS=HOST,DEV=HOST": the environments and the one host joined to each
//   CORRAL_UI_STACK    stack the script creates in the first environment
//   CORRAL_UI_IMAGE    image for the service it creates
//   CORRAL_UI_USER     "NAME:PASSWORD" of a user with the member role in the first environment
//                      (and none elsewhere): signs out and in again as that user
//   The script also creates a user, a group and their role in the second environment itself
//   (READER, GROUP below), and signs that user in in a second browser.
//   CORRAL_UI_SCREENSHOTS=1  save docs/screenshots/*.png (helpers shared with other browser tests: lib.mjs)
//   CORRAL_UI_ONLY=scale     run only the synthetic scale check (=desktop: only the desktop
//                            Settings page, with Tauri's commands stood in for)
//
// Exits 0 when every check passed; otherwise prints what failed and exits 1.

import { T, apiClient, assert, fieldErrorText, launch, need, run, selectEnv, shot, step, waitInvalid } from "./lib.mjs";

const URL_ = need("CORRAL_UI_URL").replace(/\/$/, "");
const TOKEN = need("CORRAL_UI_TOKEN");
const ENVS = (process.env.CORRAL_UI_ENVS ?? "").split(",").filter(Boolean).map((kv) => kv.split("="));
const STACK = process.env.CORRAL_UI_STACK ?? "ui-test";
const IMAGE = process.env.CORRAL_UI_IMAGE ?? "corral-test/busybox:latest";
const [USER, PASSWORD] = (process.env.CORRAL_UI_USER ?? "").split(/:(.*)/s);
const ONLY = process.env.CORRAL_UI_ONLY ?? "";
const PROBLEM_HOST = process.env.CORRAL_UI_PROBLEM_HOST ?? "";
// The balancer listens on the agent's machine: a port nothing else of the test suite uses.
const LB_PORT = 18931;
// Created from the UI: a user, in a group that gets the read-only role in the second environment.
const READER = "ui-reader";
const READER_PASSWORD = "read but do not touch";
const GROUP = "ui-readers";
// A user name whose failed logins the script runs up to the per-user limit.
const LOCKED = "ui-locked";
const LOGIN_LIMIT_PER_USER = 10;

const apiGet = apiClient(URL_, TOKEN);

async function realCluster(ctx) {
  assert(ENVS.length >= 2, "CORRAL_UI_ENVS needs two environments, e.g. OPS=h1,DEV=h2");
  const [[ops, opsHost], [dev, devHost]] = ENVS;
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  const svc = "web";

  await step("open the UI with the token link", async () => {
    await page.goto(`${URL_}/#token=${TOKEN}`);
    await page.getByTestId("nav-hosts").waitFor({ timeout: T });
  });

  if (PROBLEM_HOST) {
    await step(`the card of ${PROBLEM_HOST} says what was refused from its agent and why`, async () => {
      await selectEnv(page, "Default");
      const problem = page.locator(`[data-testid=host-card][data-host="${PROBLEM_HOST}"] [data-testid=host-problem]`);
      await problem.waitFor({ timeout: T });
      const text = await problem.textContent();
      assert(text.includes('container "ghost" not kept from the report') && text.includes("is not an engine's container id"), `the host's problem shows: ${text}`);
    });
  }

  await step(`switch to ${ops} and see its host ${opsHost}`, async () => {
    await selectEnv(page, ops);
    await page.locator(`[data-testid=host-card][data-host="${opsHost}"]`).waitFor({ timeout: T });
    await page.getByTestId("link-state").and(page.locator("[data-state=live]")).waitFor({ timeout: T });
  });

  await step("the Settings page shows the agent URL hosts join with", async () => {
    await page.getByTestId("nav-settings").click();
    const shown = (await page.getByTestId("agent-url").textContent({ timeout: T })).trim();
    const want = (await apiGet("/hosts/join-command", ops)).server_url;
    assert(shown === want, `agent URL shown: ${shown}\nAPI says: ${want}`);
    // The desktop's own settings need the desktop app: a browser does not offer them.
    assert((await page.getByTestId("desktop-settings").count()) === 0, "a browser shows no desktop settings");
    await page.mouse.move(0, 600); // no tooltip in the picture
    await shot(page, "settings");
  });

  await step("create an environment from the UI and see it in the switcher; remove it again", async () => {
    const qa = "QA-ui";
    await page.getByTestId("nav-environments").click();
    await page.getByTestId("environment-name").fill("bad name!");
    await page.getByTestId("create-environment").click();
    await page.waitForFunction(() => document.querySelector("[data-testid=environment-name]")?.getAttribute("aria-invalid") === "true", null, { timeout: T });
    const nameErr = await fieldErrorText(page, "environment-name");
    assert(/bad name!/.test(nameErr), `expected the API's name error next to the field, got ${JSON.stringify(nameErr)}`);
    await page.getByTestId("environment-name").fill(qa);
    await page.getByTestId("create-environment").click();
    await page.locator(`[data-testid=environment-row][data-env="${qa}"]`).waitFor({ timeout: T });
    assert((await fieldErrorText(page, "environment-name")) === "", "the name error is cleared once the environment is created");
    await page.getByTestId("env-switcher").click();
    await page.getByRole("option", { name: qa, exact: true }).waitFor({ timeout: T });
    await page.keyboard.press("Escape");
    const envs = (await apiGet("/environments")).map((e) => e.name);
    assert(envs.includes(qa), `the API lists ${envs.join(", ")}, not ${qa}`);
    await shot(page, "environments");
    // The default environment and ones with hosts cannot be removed: the button says so by being off.
    assert(await page.locator('[data-testid=environment-row][data-env="Default"] [data-testid=remove-environment]').isDisabled(), "Default offers no removal");
    await page.locator(`[data-testid=environment-row][data-env="${qa}"] [data-testid=remove-environment]`).click();
    await page.getByTestId("confirm-remove-environment").click();
    await page.locator(`[data-testid=environment-row][data-env="${qa}"]`).waitFor({ state: "detached", timeout: T });
    await page.getByTestId("env-switcher").click();
    await page.getByRole("option", { name: ops, exact: true }).waitFor({ timeout: T });
    assert((await page.getByRole("option", { name: qa, exact: true }).count()) === 0, `${qa} is still in the switcher after removal`);
    await page.keyboard.press("Escape");
  });

  await step("rename an environment: a bad name is refused under the field, a good one follows in the switcher", async () => {
    const [before, after] = ["QA-old", "QA-renamed"];
    await page.getByTestId("environment-name").fill(before);
    await page.getByTestId("create-environment").click();
    const row = (name) => page.locator(`[data-testid=environment-row][data-env="${name}"]`);
    await row(before).waitFor({ timeout: T });
    await row(before).getByTestId("rename-environment").click();
    await page.getByTestId("environment-new-name").fill("bad name!");
    await page.getByTestId("confirm-rename-environment").click();
    await waitInvalid(page, "environment-new-name");
    const err = await fieldErrorText(page, "environment-new-name");
    assert(/bad name!/.test(err), `expected the API's name error next to the new name, got ${JSON.stringify(err)}`);
    await shot(page, "rename-environment");
    await page.getByTestId("environment-new-name").fill(after);
    await page.getByTestId("confirm-rename-environment").click();
    await row(after).waitFor({ timeout: T });
    assert((await row(before).count()) === 0, `${before} is still listed after the rename`);
    const envs = (await apiGet("/environments")).map((e) => e.name);
    assert(envs.includes(after) && !envs.includes(before), `the API lists ${envs.join(", ")} after renaming ${before} to ${after}`);
    await page.getByTestId("env-switcher").click();
    await page.getByRole("option", { name: after, exact: true }).waitFor({ timeout: T });
    assert((await page.getByRole("option", { name: before, exact: true }).count()) === 0, `${before} is still in the switcher`);
    await page.keyboard.press("Escape");
    await row(after).getByTestId("remove-environment").click();
    await page.getByTestId("confirm-remove-environment").click();
    await row(after).waitFor({ state: "detached", timeout: T });
    await page.getByTestId("nav-hosts").click();
  });

  await step("Add Host shows the API's join command", async () => {
    await page.getByTestId("add-host").first().click();
    const shown = (await page.getByTestId("join-command").textContent({ timeout: T })).trim();
    const api = await apiGet("/hosts/join-command", ops);
    assert(shown === api.command, `join command shown: ${shown}\nAPI says: ${api.command}`);
    const fingerprint = page.getByTestId("ca-fingerprint");
    if (api.ca_fingerprint) assert((await fingerprint.textContent()).trim() === api.ca_fingerprint, "the CA fingerprint shown is the API's");
    else assert((await fingerprint.count()) === 0, "a plain-HTTP control plane has no CA fingerprint to show");
    await shot(page, "add-host");
  });

  await step("Rotate token shows a new join command, and the API has moved to it", async () => {
    const before = (await page.getByTestId("join-command").textContent()).trim();
    const oldToken = (await apiGet("/hosts/join-command", ops)).token;
    await page.getByTestId("rotate-token").click();
    await page.getByTestId("confirm-rotate-token").click();
    await page.getByTestId("token-rotated").waitFor({ timeout: T });
    const after = (await page.getByTestId("join-command").textContent()).trim();
    const api = await apiGet("/hosts/join-command", ops);
    assert(after !== before, `the command shown did not change after rotating: ${after}`);
    assert(api.token !== oldToken && after === api.command, `command shown after rotating: ${after}\nAPI says: ${api.command}`);
    assert(!after.includes(oldToken), "the new command still carries the old token");
    await page.keyboard.press("Escape");
    await page.getByTestId("join-command").waitFor({ state: "detached", timeout: T });
  });

  await step(`create stack ${STACK} from the form`, async () => {
    await page.getByTestId("nav-stacks").click();
    await page.getByTestId("stack-name").fill(STACK);
    await page.getByTestId("create-stack").click();
    await page.getByTestId("stack-title").filter({ hasText: STACK }).waitFor({ timeout: T });
  });

  await step("a bad form shows the API's message next to the field", async () => {
    await page.getByTestId("add-service").first().click();
    await page.getByTestId("svc-name").fill("bad");
    await page.getByTestId("svc-image").fill(IMAGE);
    await page.getByTestId("svc-scale").fill("-1");
    await page.getByTestId("svc-submit").click();
    await page.waitForFunction(() => document.querySelector("[data-testid=svc-scale]")?.getAttribute("aria-invalid") === "true", null, { timeout: T });
    const scaleErr = await fieldErrorText(page, "svc-scale");
    assert(/scale -1/.test(scaleErr), `expected the scale error next to Scale, got ${JSON.stringify(scaleErr)}`);
    await page.getByTestId("svc-scale").fill("1");
    await page.getByTestId("svc-ports").fill("99999");
    await page.getByTestId("svc-submit").click();
    await page.waitForFunction(() => document.querySelector("[data-testid=svc-ports]")?.getAttribute("aria-invalid") === "true", null, { timeout: T });
    const portErr = await fieldErrorText(page, "svc-ports");
    assert(/99999/.test(portErr), `expected the port error next to Ports, got ${JSON.stringify(portErr)}`);
    assert((await fieldErrorText(page, "svc-scale")) === "", "the scale error is cleared once scale is fixed");
    const services = await apiGet(`/stacks/${encodeURIComponent(STACK)}/services`, ops);
    assert(services.length === 0, `a rejected form created nothing, but the stack has ${services.length} services`);
    await page.keyboard.press("Escape");
    await page.getByTestId("service-form").waitFor({ state: "detached", timeout: T });
  });

  await step("create a service with scale 3 and see 3 running containers without reload", async () => {
    const loads = [];
    page.on("framenavigated", (f) => f === page.mainFrame() && loads.push(f.url()));
    await page.getByTestId("add-service").first().click();
    await page.getByTestId("svc-name").fill(svc);
    await page.getByTestId("svc-image").fill(IMAGE);
    await page.getByTestId("svc-command").fill(`sh -c 'echo hello-from-corral; exec httpd -f -p 80'`);
    await page.getByTestId("svc-env").fill("GREETING=hello");
    await page.getByTestId("svc-ports").fill("80");
    await page.getByTestId("svc-scale").fill("3");
    await page.getByTestId("svc-submit").click();
    await page.getByTestId("service-form").waitFor({ state: "detached", timeout: T });
    const row = page.locator(`[data-testid=service-row][data-service="${svc}"]`);
    await row.getByTestId("service-running").filter({ hasText: "3/3 running" }).waitFor({ timeout: 60_000 });
    await page.getByTestId("tab-containers").click();
    await page.waitForFunction(() => document.querySelectorAll("[data-testid=container-row][data-state=running]").length === 3, null, { timeout: 60_000 });
    assert(loads.every((u) => !u.includes("#token=")) && loads.length <= 3, `the page reloaded: ${loads.join(", ")}`);
  });

  await step("create a load balancer targeting the service from the form", async () => {
    await page.getByTestId("tab-services").click();
    await page.getByTestId("add-lb").click();
    await page.getByTestId("lb-name").fill("web-lb");
    await page.getByTestId("lb-ports").fill(`${LB_PORT}:80`);
    await page.getByTestId("lb-targets").fill(`${STACK}/${svc}`);
    await page.keyboard.press("Enter");
    await page.getByTestId("lb-submit").click();
    await page.getByTestId("lb-form").waitFor({ state: "detached", timeout: T });
    await page.locator('[data-testid=service-row][data-service="web-lb"]').waitFor({ timeout: T });
    await page.locator('[data-testid=service-row][data-service="web-lb"] [data-testid=service-running]').filter({ hasText: "1/1 running" }).waitFor({ timeout: 60_000 });
    await shot(page, "stack");
  });

  await step("the graph has a node per service and an edge per balancer target", async () => {
    await page.getByTestId("tab-graph").click();
    await page.locator("[data-testid=graph][data-ready=true]").waitFor({ timeout: T });
    await page.locator(`[data-testid=graph-node][data-service="${svc}"][data-health=healthy]`).waitFor({ timeout: T });
    await page.locator('[data-testid=graph-node][data-service="web-lb"]').waitFor({ timeout: T });
    const nodes = await page.getByTestId("graph-node").count();
    const edges = await page.locator(".react-flow__edge").count();
    assert(nodes === 2, `graph nodes: ${nodes}, want 2`);
    assert(edges === 1, `graph edges: ${edges}, want 1 (web-lb -> ${svc})`);
    await shot(page, "graph");
  });

  await step("a container page streams its log", async () => {
    await page.getByTestId("tab-containers").click();
    await page.getByTestId("container-row").first().getByRole("link").first().click();
    await page.getByTestId("container-details").waitFor({ timeout: T });
    await page.getByTestId("logs").filter({ hasText: "hello-from-corral" }).waitFor({ timeout: T });
    await shot(page, "container-logs");
  });

  await step("a container page charts its usage with data", async () => {
    // Agents report every 5 s and the panel refreshes every 10 s.
    await page.waitForFunction(() => Number(document.querySelector("[data-testid=stats-chart]")?.getAttribute("data-points") ?? 0) > 0, null, { timeout: 60_000 });
    assert((await page.locator("[data-testid=stats-chart] canvas").count()) >= 1, "the chart draws on a canvas");
    await shot(page, "container-stats");
  });

  await step("the dashboard shows totals and the busiest containers", async () => {
    await page.getByTestId("nav-dashboard").click();
    await page.getByTestId("total-hosts").waitFor({ timeout: T });
    await page.locator("[data-testid=busiest-containers] tbody tr").first().waitFor({ timeout: 30_000 });
    await shot(page, "dashboard");
  });

  await step(`switch ${ops} -> ${dev} and see only ${dev}'s host`, async () => {
    await page.getByTestId("nav-hosts").click();
    // The OPS host card now links to the three containers the form created.
    await page.waitForFunction((h) => document.querySelectorAll(`[data-testid=host-card][data-host="${h}"] a.chip`).length >= 3, opsHost, { timeout: T });
    await shot(page, "hosts");
    await selectEnv(page, dev);
    await page.locator(`[data-testid=host-card][data-host="${devHost}"]`).waitFor({ timeout: T });
    const hosts = await page.getByTestId("host-card").evaluateAll((els) => els.map((e) => e.getAttribute("data-host")));
    assert(hosts.length === 1 && hosts[0] === devHost, `hosts shown in ${dev}: ${hosts.join(", ")}`);
    await page.getByTestId("nav-stacks").click();
    await page.getByTestId("stacks-empty").waitFor({ timeout: T });
  });

  await step("the desktop's corral:select-env event switches back", async () => {
    await page.evaluate((e) => window.dispatchEvent(new CustomEvent("corral:select-env", { detail: e })), ops);
    await page.waitForFunction((e) => document.title === `Corral — ${e}`, ops, { timeout: T });
    await page.getByTestId("stack-link").filter({ hasText: STACK }).waitFor({ timeout: T });
  });

  await accessControl(page, dev, devHost);

  if (USER) {
    await step("sign out, then a wrong password shows the API's message", async () => {
      await page.getByTestId("user-menu").click();
      await page.getByTestId("sign-out").click();
      await page.getByTestId("login-form").waitFor({ timeout: T });
      await page.getByTestId("login-user").fill(USER);
      await page.getByTestId("login-password").fill(`${PASSWORD}-wrong`);
      await page.getByTestId("login-submit").click();
      const shown = (await page.getByTestId("login-error").textContent({ timeout: T })).trim();
      // What the API itself answers to a wrong password (from outside the browser, so the
      // browser's failure count stays at one).
      const res = await fetch(`${URL_}/v1/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user: USER, password: `${PASSWORD}-other` }) });
      const want = (await res.json()).message;
      assert(res.status === 401 && shown === want, `login error shown: ${JSON.stringify(shown)}\nAPI says (${res.status}): ${JSON.stringify(want)}`);
      await shot(page, "login");
    });

    await step("too many failed logins: the login page shows the API's 429 message", async () => {
      const attempt = (password) =>
        fetch(`${URL_}/v1/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user: LOCKED, password }) });
      // In parallel: each failure takes a while to answer on purpose.
      await Promise.all(Array.from({ length: LOGIN_LIMIT_PER_USER }, (_, i) => attempt(`wrong-${i}`)));
      const res = await attempt("wrong-again");
      const body = await res.json();
      assert(res.status === 429 && body.code === "too_many_attempts", `after ${LOGIN_LIMIT_PER_USER} failures the API answers ${res.status} ${JSON.stringify(body)}`);
      await page.getByTestId("login-user").fill(LOCKED);
      await page.getByTestId("login-password").fill("wrong-in-the-browser");
      await page.getByTestId("login-submit").click();
      await page.locator("[data-testid=login-error][data-code=too_many_attempts]").waitFor({ timeout: T });
      const shown = (await page.getByTestId("login-error-message").textContent()).trim();
      // The wait in the message counts down between the two answers: compare without the numbers.
      const words = (m) => m.replace(/\d+/g, "N");
      assert(words(shown) === words(body.message), `429 message shown: ${JSON.stringify(shown)}\nAPI says: ${JSON.stringify(body.message)}`);
      await page.getByTestId("login-user").fill(USER);
    });

    await step(`sign in as ${USER} (member in ${ops} only) and see ${ops}'s host and stack`, async () => {
      await page.getByTestId("login-password").fill(PASSWORD);
      await page.getByTestId("login-submit").click();
      await page.locator(`[data-testid=user-menu][data-user="${USER}"]`).waitFor({ timeout: T });
      await page.getByTestId("nav-hosts").click();
      await page.locator(`[data-testid=host-card][data-host="${opsHost}"]`).waitFor({ timeout: T });
      await page.getByTestId("link-state").and(page.locator("[data-state=live]")).waitFor({ timeout: T });
      await page.getByTestId("env-switcher").click();
      await page.getByRole("option", { name: ops, exact: true }).waitFor({ timeout: T });
      const options = await page.getByRole("option").allTextContents();
      assert(options.length === 1, `${USER} sees only ${ops} in the switcher, not ${options.join(", ")}`);
      await page.keyboard.press("Escape");
      await page.getByTestId("nav-stacks").click();
      await page.getByTestId("stack-link").filter({ hasText: STACK }).waitFor({ timeout: T });
      // Members change stacks and add hosts, but environments are the administrators'.
      await page.getByTestId("create-stack-form").waitFor({ timeout: T });
      await page.getByTestId("nav-environments").click();
      await page.locator(`[data-testid=environment-row][data-env="${ops}"]`).waitFor({ timeout: T });
      assert((await page.getByTestId("create-environment-form").count()) === 0, "a member is offered to create environments");
    });
  }

  await page.close();
}

// ---------------------------------------------------------------------------------------------
// Access control from the UI, as an administrator (`page`, signed in with the token link): a user
// and a group created, the group given read-only in `env`; that user, signed in in a second
// browser, sees `env` and no control to change anything; a host deactivated; the audit log.

async function accessControl(page, env, host) {
  await step("Users: a short password is refused under its field; a user is created", async () => {
    await page.getByTestId("nav-users").click();
    await page.getByTestId("user-name").fill(READER);
    await page.getByTestId("user-password").fill("short");
    await page.getByTestId("create-user").click();
    await waitInvalid(page, "user-password");
    const err = await fieldErrorText(page, "user-password");
    assert(/too short/.test(err), `expected the API's password error next to the field, got ${JSON.stringify(err)}`);
    assert((await apiGet("/users")).every((u) => u.name !== READER), "a refused form created the user anyway");
    await page.getByTestId("user-password").fill(READER_PASSWORD);
    await page.getByTestId("create-user").click();
    await page.locator(`[data-testid=user-row][data-user="${READER}"]`).waitFor({ timeout: T });
    const user = (await apiGet("/users")).find((u) => u.name === READER);
    assert(user && user.password && !user.admin, `the API has ${JSON.stringify(user)} for ${READER}`);
    await shot(page, "users");
  });

  await step(`Groups: create ${GROUP} and add ${READER} to it`, async () => {
    await page.getByTestId("nav-groups").click();
    await page.getByTestId("group-name").fill(GROUP);
    await page.getByTestId("create-group").click();
    const card = page.locator(`[data-testid=group-card][data-group="${GROUP}"]`);
    await card.waitFor({ timeout: T });
    await card.getByTestId("group-add-user").click();
    await page.getByRole("option", { name: READER, exact: true }).click();
    await card.getByTestId("group-add-submit").click();
    await card.locator(`[data-testid=group-member][data-user="${READER}"]`).waitFor({ timeout: T });
    const group = (await apiGet("/groups")).find((g) => g.name === GROUP);
    assert(group && group.members.includes(READER), `the API has ${JSON.stringify(group)} for ${GROUP}`);
    await shot(page, "groups");
  });

  await step(`Members: give ${GROUP} the read-only role in ${env}`, async () => {
    await selectEnv(page, env);
    await page.getByTestId("nav-members").click();
    await page.getByTestId("member-kind").getByText("Group", { exact: true }).click();
    await page.getByTestId("member-name").fill(GROUP);
    await page.keyboard.press("Escape");
    await page.getByTestId("member-new-role").click();
    await page.getByRole("option", { name: "read-only", exact: true }).click();
    await page.getByTestId("add-member").click();
    await page.locator(`[data-testid=member-row][data-member="group:${GROUP}"][data-role=read-only]`).waitFor({ timeout: T });
    const members = await apiGet("/members", env);
    assert(members.some((m) => m.kind === "group" && m.name === GROUP && m.role === "read-only"), `the API lists ${JSON.stringify(members)} in ${env}`);
    await shot(page, "members");
  });

  const reader = await launch();
  try {
    const rp = await reader.newPage();
    rp.on("pageerror", (e) => console.error(`[reader page error] ${e.message}`));

    await step(`${READER} signs in in a second browser, sees ${env} and no control to change it`, async () => {
      await rp.goto(`${URL_}/`);
      await rp.getByTestId("login-user").fill(READER);
      await rp.getByTestId("login-password").fill(READER_PASSWORD);
      await rp.getByTestId("login-submit").click();
      await rp.locator(`[data-testid=user-menu][data-user="${READER}"]`).waitFor({ timeout: T });
      await rp.getByTestId("nav-hosts").click();
      await rp.locator(`[data-testid=host-card][data-host="${host}"]`).waitFor({ timeout: T });
      await rp.getByTestId("link-state").and(rp.locator("[data-state=live]")).waitFor({ timeout: T });
      await rp.getByTestId("env-switcher").click();
      await rp.getByRole("option", { name: env, exact: true }).waitFor({ timeout: T });
      const options = await rp.getByRole("option").allTextContents();
      assert(options.length === 1, `${READER} sees ${options.join(", ")} in the switcher, not only ${env}`);
      await rp.keyboard.press("Escape");
      const none = async (testId, what) => assert((await rp.getByTestId(testId).count()) === 0, `read-only is offered ${what}`);
      await none("add-host", "Add Host");
      await none("host-actions", "host actions");
      for (const nav of ["nav-members", "nav-audit", "nav-users", "nav-groups"]) await none(nav, `the ${nav.slice(4)} page`);
      await rp.getByTestId("nav-stacks").click();
      await rp.getByTestId("stacks-empty").waitFor({ timeout: T });
      await none("create-stack-form", "the new stack form");
      await rp.getByTestId("nav-environments").click();
      await rp.locator(`[data-testid=environment-row][data-env="${env}"]`).waitFor({ timeout: T });
      await none("create-environment-form", "the new environment form");
      await none("rename-environment", "renaming environments");
      await shot(rp, "read-only");
      // Everyone who sees the environment may read its members, but not change them.
      await rp.goto(`${URL_}/#/members`);
      await rp.locator(`[data-testid=member-row][data-member="group:${GROUP}"]`).waitFor({ timeout: T });
      await none("add-member-form", "the form giving roles");
      await none("remove-member", "removing members");
      assert(await rp.getByTestId("member-role").isDisabled(), "read-only can change a role");
      // Typing the address of a page the role may not see: the API's refusal, said plainly.
      for (const path of ["audit", "users"]) {
        await rp.goto(`${URL_}/#/${path}`);
        const refusal = rp.getByTestId("api-forbidden");
        await refusal.waitFor({ timeout: T });
        assert(/You may not see/.test(await refusal.textContent()), `#/${path} shows ${await refusal.textContent()}`);
      }
      await rp.getByTestId("nav-hosts").click();
      await rp.locator(`[data-testid=host-card][data-host="${host}"]`).waitFor({ timeout: T });
    });

    await step(`deactivate ${host}: its card says so, here and in ${READER}'s browser, and so does the API`, async () => {
      await page.getByTestId("nav-hosts").click();
      const card = page.locator(`[data-testid=host-card][data-host="${host}"]`);
      await card.getByTestId("host-actions").click();
      await page.getByTestId("host-deactivate").click();
      await card.getByTestId("host-deactivated").waitFor({ timeout: T });
      const h = (await apiGet("/hosts", env)).find((x) => x.name === host);
      assert(h.deactivated === true && h.status === "deactivated", `the API says ${host} is ${JSON.stringify({ deactivated: h.deactivated, status: h.status })}`);
      await rp.locator(`[data-testid=host-card][data-host="${host}"] [data-testid=host-deactivated]`).waitFor({ timeout: T });
      // Deactivated, it may be removed, or activated again.
      await card.getByTestId("host-actions").click();
      await page.getByTestId("host-remove").waitFor({ timeout: T });
      assert((await page.getByTestId("host-activate").count()) === 1, "a deactivated host offers Activate");
      await page.mouse.move(700, 850); // no tooltip in the picture
      await shot(page, "host-actions");
      await page.keyboard.press("Escape");
    });
  } finally {
    await reader.close().catch(() => {});
  }

  await step(`the audit log of ${env} lists the changes, newest first, as the API does`, async () => {
    await page.getByTestId("nav-audit").click();
    const row = (method, path) => page.locator(`[data-testid=audit-row][data-method=${method}][data-path="${path}"]`);
    await row("POST", `/v1/hosts/${host}/deactivate`).first().waitFor({ timeout: T });
    await row("POST", "/v1/members").first().waitFor({ timeout: T });
    const who = await row("POST", "/v1/members").first().getAttribute("data-user");
    assert(who === "admin", `the role was given by ${who}, says the audit log`);
    const [newest] = await apiGet("/audit?limit=1", env);
    const first = page.getByTestId("audit-row").first();
    const shown = [await first.getAttribute("data-method"), await first.getAttribute("data-path")].join(" ");
    assert(shown === `${newest.method} ${newest.path}`, `first audit row: ${shown}; the API's newest entry: ${newest.method} ${newest.path}`);
    await shot(page, "audit");
  });
}

// ---------------------------------------------------------------------------------------------
// The Settings page as the desktop window runs it: `window.__CORRAL__` and Tauri's `invoke` are
// stood in for here with the commands' documented shapes (docs/desktop.md); the desktop's own
// tests check the commands themselves.

async function desktopSettings(ctx) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  const agentUrl = "http://192.0.2.10:7070";
  await page.addInitScript(
    ([api, token, agentUrl]) => {
      window.__CORRAL__ = { api, token, agentUrl };
      let saved = { agent_port: 7070, on_close: "ask" };
      const view = () => ({ ...saved, listening_port: 7070, restart_needed: saved.agent_port !== 7070 });
      window.__TAURI_INTERNALS__ = {
        invoke: async (cmd, args) => {
          if (cmd === "get_settings") return view();
          if (cmd !== "set_settings") throw `unknown command ${cmd}`;
          const next = { ...saved, ...args.change };
          if (next.agent_port === 0) throw { code: "bad_settings", message: "settings: agent_port must be between 1 and 65535" };
          saved = next;
          return view();
        },
      };
    },
    [URL_, TOKEN, agentUrl],
  );

  await step("desktop (simulated Tauri): Settings shows the API's agent URL and changes the agent port", async () => {
    await page.goto(`${URL_}/#/settings`);
    // The API's, which follows a change made in Settings; the one the window got at start is a fallback.
    const want = (await apiGet("/settings")).agent_url;
    await page.waitForFunction((w) => document.querySelector("[data-testid=agent-url]")?.textContent.trim() === w, want, { timeout: T }).catch(() => {});
    const shown = (await page.getByTestId("agent-url").textContent({ timeout: T })).trim();
    assert(shown === want, `agent URL shown in the desktop: ${shown}, want the API's ${want} (not the start-up ${agentUrl})`);
    assert((await page.getByTestId("sign-out").count()) === 0, "the desktop offers no sign-out");
    const port = page.getByTestId("agent-port");
    assert((await port.inputValue({ timeout: T })) === "7070", `agent port shown: ${await port.inputValue()}`);
    await port.fill("0");
    await page.getByTestId("save-agent-port").click();
    await page.waitForFunction(() => document.querySelector("[data-testid=agent-port]")?.getAttribute("aria-invalid") === "true", null, { timeout: T });
    const err = await fieldErrorText(page, "agent-port");
    assert(/agent_port must be between 1 and 65535/.test(err), `expected the app's message next to the port, got ${JSON.stringify(err)}`);
    assert((await page.getByTestId("restart-needed").count()) === 0, "a refused port asks for no restart");
    await port.fill("7171");
    await page.getByTestId("save-agent-port").click();
    await page.getByTestId("restart-needed").filter({ hasText: "7171" }).waitFor({ timeout: T });
    assert((await fieldErrorText(page, "agent-port")) === "", "the port error is cleared once saved");
    await page.getByTestId("on-close").getByText("Keep running in the tray").click();
    await page.waitForFunction(async () => (await window.__TAURI_INTERNALS__.invoke("get_settings")).on_close === "tray", null, { timeout: T });
    await page.mouse.move(0, 600);
    await shot(page, "settings-desktop");
  });
  await page.close();
}

// ---------------------------------------------------------------------------------------------
// UI scale check with SYNTHETIC data: 1,000 hosts and 20,000 containers served by interception.

const SYN_HOSTS = 1000;
const SYN_CONTAINERS = 20_000;
const SYN_SERVICES = 40;
const RENDER_BUDGET_MS = 15_000;
const SCROLL_BUDGET_MS = 10_000;

function syntheticData() {
  const now = new Date().toISOString();
  const hosts = Array.from({ length: SYN_HOSTS }, (_, i) => ({
    id: `h-${i}`,
    name: `syn-host-${String(i).padStart(4, "0")}`,
    state: i % 97 === 0 ? "disconnected" : "active",
    state_since: now,
    address: `10.1.${Math.floor(i / 250)}.${i % 250}`,
    docker_version: "20.10.24",
    cpus: 8,
    memory_bytes: 32 * 2 ** 30,
    os: "Linux (Debian GNU/Linux 12)",
    kernel: "6.1.0",
    labels: { zone: `z${i % 3}` },
    in_sync: true,
    containers: SYN_CONTAINERS / SYN_HOSTS,
  }));
  const per = SYN_CONTAINERS / SYN_SERVICES;
  const services = Array.from({ length: SYN_SERVICES }, (_, i) => ({
    id: i + 1, stack: "synthetic", name: `svc-${String(i).padStart(2, "0")}`, kind: "container", image: "busybox",
    command: [], env: [], ports: [], labels: {}, constraints: [], scale: per, revision: 1, state: "active",
    placed: per, running: per, upgraded: 0, unplaced: [], created_at: now, updated_at: now,
  }));
  const containers = Array.from({ length: SYN_CONTAINERS }, (_, i) => {
    const s = services[i % SYN_SERVICES];
    const instance = Math.floor(i / SYN_SERVICES) + 1;
    return {
      name: `synthetic-${s.name}-${instance}`, stack: "synthetic", service: s.name, instance,
      host: hosts[i % SYN_HOSTS].name, host_state: "active", state: "running", status: "Up 2 hours", reason: null,
      ip: `172.20.${Math.floor(i / 250) % 250}.${i % 250}`, ports: [{ host_port: null, container_port: 80, protocol: "tcp" }],
      docker_id: `${i}`.padStart(64, "0"),
    };
  });
  return {
    "/v1/environments": [{ name: "Default", created_at: now, hosts: SYN_HOSTS, stacks: 1 }],
    "/v1/hosts": hosts,
    "/v1/containers": containers,
    "/v1/stacks": [{ id: 1, name: "synthetic", created_at: now, services: SYN_SERVICES }],
    "/v1/stacks/synthetic/services": services,
  };
}

/** Scrolls `scrollTestId` in big steps (as dragging the scrollbar does) until `lastSelector` renders; ms taken. */
async function scrollToEnd(page, scrollTestId, lastSelector) {
  // The loop runs in the page, so it times the UI rather than the round trips to the browser.
  return page.getByTestId(scrollTestId).evaluate(
    async (el, [sel, limit]) => {
      const t0 = performance.now();
      const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      while (!document.querySelector(sel)) {
        if (performance.now() - t0 > limit) throw new Error(`never reached ${sel} (scrollTop ${el.scrollTop} of ${el.scrollHeight})`);
        el.scrollBy(0, el.clientHeight * 20);
        await frame();
      }
      return Math.round(performance.now() - t0);
    },
    [lastSelector, SCROLL_BUDGET_MS * 2],
  );
}

async function scaleCheck(ctx) {
  const data = syntheticData();
  const bodies = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, JSON.stringify(v)]));
  const page = await ctx.newPage();
  await page.route(/\/v1\//, (route) => {
    const path = new URL(route.request().url()).pathname;
    const body = bodies[path];
    if (body) return route.fulfill({ status: 200, contentType: "application/json", body });
    return route.fulfill({ status: 404, contentType: "application/json", body: JSON.stringify({ code: "not_found", message: `synthetic: no ${path}` }) });
  });
  await page.routeWebSocket(/\/v1\/events/, (ws) => ws.send(JSON.stringify({ type: "hello", environment: "Default" })));
  const results = {};

  await step(`synthetic: hosts page with ${SYN_HOSTS} hosts and ${SYN_CONTAINERS} containers`, async () => {
    const t0 = Date.now();
    await page.goto(`${URL_}/#/hosts`);
    await page.locator('[data-testid=host-card][data-host="syn-host-0000"]').waitFor({ timeout: RENDER_BUDGET_MS });
    // The container badges come from a second request: wait for the first card to show them.
    await page.locator('[data-testid=host-card][data-host="syn-host-0000"] a').first().waitFor({ timeout: RENDER_BUDGET_MS });
    results.hostsRender = Date.now() - t0;
    results.hostsScroll = await scrollToEnd(page, "hosts-scroll", `[data-testid=host-card][data-host="syn-host-${String(SYN_HOSTS - 1).padStart(4, "0")}"]`);
    results.hostCardsInDom = await page.getByTestId("host-card").count();
  });

  await step(`synthetic: stack containers table with ${SYN_CONTAINERS} rows`, async () => {
    const t0 = Date.now();
    await page.goto(`${URL_}/#/stacks/synthetic/containers`);
    await page.getByTestId("container-row").first().waitFor({ timeout: RENDER_BUDGET_MS });
    results.containersRender = Date.now() - t0;
    const last = `synthetic-svc-${String(SYN_SERVICES - 1).padStart(2, "0")}-${SYN_CONTAINERS / SYN_SERVICES}`;
    results.containersScroll = await scrollToEnd(page, "containers-scroll", `[data-testid=container-row] a[href="#/containers/${last}"]`);
    results.containerRowsInDom = await page.getByTestId("container-row").count();
  });

  console.log(
    `[ui] UI scale check (synthetic data: ${SYN_HOSTS} hosts, ${SYN_CONTAINERS} containers): ` +
      `hosts render ${results.hostsRender} ms, scroll to end ${results.hostsScroll} ms, ${results.hostCardsInDom} host cards in the DOM; ` +
      `containers render ${results.containersRender} ms, scroll to end ${results.containersScroll} ms, ${results.containerRowsInDom} rows in the DOM`,
  );
  assert(results.hostsRender < RENDER_BUDGET_MS && results.containersRender < RENDER_BUDGET_MS, `render over ${RENDER_BUDGET_MS} ms`);
  assert(results.hostsScroll < SCROLL_BUDGET_MS && results.containersScroll < SCROLL_BUDGET_MS, `scroll over ${SCROLL_BUDGET_MS} ms`);
  assert(results.hostCardsInDom <= 40, `${results.hostCardsInDom} host cards in the DOM: the list is not virtualised`);
  assert(results.containerRowsInDom <= 100, `${results.containerRowsInDom} container rows in the DOM: the table is not virtualised`);
  await page.close();
}

await run(async () => {
  const browser = await launch();
  if (ONLY === "") await realCluster(browser);
  if (ONLY === "" || ONLY === "desktop") await desktopSettings(browser);
  if (ONLY === "" || ONLY === "scale") await scaleCheck(browser);
});
