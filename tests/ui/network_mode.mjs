// A service's network chosen in a real browser. The test side has created stack
// CORRAL_UI_STACK on a control plane with one host. Here: Host with a published port is refused
// beside the Network field and creates nothing; a service made with Network = Bridge is created,
// its page says Bridge, and the API says bridge (the test side then asks the engine).
//
//   CORRAL_UI_URL, CORRAL_UI_TOKEN      the control plane and its admin token
//   CORRAL_UI_STACK                     the stack to create the service in
//   CORRAL_UI_SERVICE                   the service's name
//   CORRAL_UI_IMAGE                     an image the host has

import { T, apiClient, assert, fieldErrorText, launch, need, run, shot, step, waitInvalid } from "./lib.mjs";

const URL_ = need("CORRAL_UI_URL");
const TOKEN = need("CORRAL_UI_TOKEN");
const STACK = need("CORRAL_UI_STACK");
const SERVICE = need("CORRAL_UI_SERVICE");
const IMAGE = need("CORRAL_UI_IMAGE");
const apiGet = apiClient(URL_, TOKEN);

async function pick(page, testId, option) {
  await page.getByTestId(testId).click();
  await page.getByRole("option", { name: option, exact: true }).click();
}

async function networkMode(ctx) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));

  await step(`open stack ${STACK} and the new-service form: Network is Managed unless changed`, async () => {
    await page.goto(`${URL_}/#token=${TOKEN}`);
    await page.getByTestId("nav-stacks").click();
    await page.getByTestId("stack-link").filter({ hasText: STACK }).click();
    await page.getByTestId("add-service").first().click();
    assert((await page.getByTestId("svc-network").inputValue()) === "Managed (default)", "the form starts on the managed network");
  });

  await step("Host with a published port is refused beside Network, and nothing is created", async () => {
    await page.getByTestId("svc-name").fill(SERVICE);
    await page.getByTestId("svc-image").fill(IMAGE);
    await page.getByTestId("svc-command").fill("sleep 3600");
    await page.getByTestId("svc-ports").fill("8080:80");
    await pick(page, "svc-network", "Host");
    await page.getByText("the container's ports are the host's").waitFor({ timeout: T });
    await page.getByTestId("svc-submit").click();
    await waitInvalid(page, "svc-network");
    const error = await fieldErrorText(page, "svc-network");
    assert(error.includes("host's own ports") && error.includes("remove the ports"), `the network's error reads: ${error}`);
    await shot(page, "service-network");
    const services = await apiGet(`/stacks/${encodeURIComponent(STACK)}/services`);
    assert(services.length === 0, `a refused form created ${services.length} services`);
  });

  await step("Bridge without ports creates the service", async () => {
    await page.getByTestId("svc-ports").fill("");
    await pick(page, "svc-network", "Bridge");
    await page.getByText("reached from elsewhere only through published ports").waitFor({ timeout: T });
    assert((await fieldErrorText(page, "svc-network")) === "", "the refusal of Host is gone once Bridge is chosen");
    await page.getByTestId("svc-submit").click();
    await page.getByTestId("service-form").waitFor({ state: "detached", timeout: T });
    const row = page.locator(`[data-testid=service-row][data-service="${SERVICE}"]`);
    await row.getByTestId("service-running").filter({ hasText: "1/1 running" }).waitFor({ timeout: 60_000 });
    const service = await apiGet(`/stacks/${encodeURIComponent(STACK)}/services/${encodeURIComponent(SERVICE)}`);
    assert(service.network === "bridge", `the API says the service is on ${service.network}`);
  });

  await step("the service page says Bridge", async () => {
    await page.locator(`[data-testid=service-row][data-service="${SERVICE}"]`).getByTestId("service-link").click();
    const shown = page.getByTestId("service-network");
    await shown.and(page.locator("[data-network=bridge]")).waitFor({ timeout: T });
    const text = await shown.textContent();
    assert(text.includes("Bridge") && text.includes("published ports"), `the service page reads: ${text}`);
  });

  await step("the edit form starts on Bridge", async () => {
    await page.getByTestId("nav-stacks").click();
    await page.getByTestId("stack-link").filter({ hasText: STACK }).click();
    await page.locator(`[data-testid=service-row][data-service="${SERVICE}"]`).getByTestId("service-edit").click();
    assert((await page.getByTestId("upgrade-network").inputValue()) === "Bridge", "the edit form shows the service's network");
    await page.keyboard.press("Escape");
  });
}

await run(async () => {
  const ctx = await launch();
  await networkMode(ctx);
});
