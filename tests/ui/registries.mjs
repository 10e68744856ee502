// The Registries page in a real browser, against a control plane whose host pulls from the test
// registry (TLS from a test CA, logins). The test side has created a service whose image comes
// from that registry; it cannot run until the registry is added. Here the registry is added
// through the form (a bad host first, refused beside its field), the service then runs, the
// list shows that a password is set but never the password, and the registry is removed again.
//
//   CORRAL_UI_URL, CORRAL_UI_TOKEN      the control plane and its admin token
//   CORRAL_UI_REGISTRY                  HOST:PORT of the test registry
//   CORRAL_UI_REGISTRY_LOGIN            USER:PASSWORD
//   CORRAL_UI_REGISTRY_CA               the registry's CA file (PEM)
//   CORRAL_UI_CONTAINER                 the container that runs once the image is pulled

import { readFileSync } from "node:fs";
import { T, apiClient, assert, fieldErrorText, launch, need, run, shot, step, waitInvalid } from "./lib.mjs";

const URL_ = need("CORRAL_UI_URL");
const TOKEN = need("CORRAL_UI_TOKEN");
const HOST = need("CORRAL_UI_REGISTRY");
const [USER, ...rest] = need("CORRAL_UI_REGISTRY_LOGIN").split(":");
const PASSWORD = rest.join(":");
const CA = readFileSync(need("CORRAL_UI_REGISTRY_CA"), "utf8");
const CONTAINER = need("CORRAL_UI_CONTAINER");
const apiGet = apiClient(URL_, TOKEN);

async function registries(ctx) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  const row = page.locator(`[data-testid=registry-row][data-registry="${HOST}"]`);

  await step("open the Registries page: no registry yet", async () => {
    await page.goto(`${URL_}/#token=${TOKEN}`);
    await page.getByTestId("nav-registries").click();
    await page.getByTestId("registries-empty").waitFor({ timeout: T });
  });

  await step("a host with a scheme is refused beside its field, and nothing is added", async () => {
    await page.getByTestId("registry-host").fill(`https://${HOST}`);
    await page.getByTestId("save-registry").click();
    await waitInvalid(page, "registry-host");
    const error = await fieldErrorText(page, "registry-host");
    assert(error.includes("invalid registry host"), `the host's error reads: ${error}`);
    assert((await apiGet("/registries")).length === 0, "a refused registry was added");
  });

  await step("add the registry with its login and CA: the list says the password is set, never what it is", async () => {
    await page.getByTestId("registry-host").fill(HOST);
    await page.getByTestId("registry-user").fill(USER);
    await page.getByTestId("registry-password-input").fill(PASSWORD);
    await page.getByTestId("registry-ca").fill(CA);
    await page.getByTestId("save-registry").click();
    await row.and(page.locator("[data-password=set]")).waitFor({ timeout: T });
    const text = await row.textContent();
    assert(text.includes(USER) && text.includes("installed on every host"), `the registry's row reads: ${text}`);
    assert((await page.getByTestId("registry-password-input").inputValue()) === "", "the password stays in the form");
    assert(!(await page.content()).includes(PASSWORD), "the page holds the password");
  });

  await step(`the service waiting for the image runs: ${CONTAINER} was pulled with the login`, async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const c = (await apiGet("/containers")).find((c) => c.name === CONTAINER);
      if (c?.state === "running") break;
      assert(Date.now() < deadline, `${CONTAINER} is not running: ${JSON.stringify(c)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await page.reload();
    await row.waitFor({ timeout: T });
    const services = await row.locator("td").nth(4).textContent();
    assert(services.trim() === "1", `the registry's row counts ${services} services`);
    await shot(page, "registries");
  });

  await step("remove the registry", async () => {
    await row.getByTestId("remove-registry").click();
    await page.getByTestId("confirm-remove-registry").click();
    await page.getByTestId("registries-empty").waitFor({ timeout: T });
    assert((await apiGet("/registries")).length === 0, "the registry is still listed by the API");
  });
}

await run(async () => {
  const ctx = await launch();
  await registries(ctx);
});
