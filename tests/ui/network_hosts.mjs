// A host's page shows its part of the managed network, in a real browser: its subnet, its tunnel,
// and each peer's endpoint, last handshake (ticking) and bytes; a host whose peer cannot be
// reached over UDP shows the problem with what to check, and `never` for that peer's handshake.
//
//   CORRAL_UI_URL, CORRAL_UI_TOKEN      the control plane and its admin token
//   HOST_OK                             a host whose tunnel to HOST_BLOCKED works
//   HOST_BLOCKED                        a host that receives no UDP on its tunnel port
//   PEER_ENDPOINT                       HOST_BLOCKED's tunnel endpoint (ADDRESS:PORT)
//   PROBLEM                             the start of HOST_BLOCKED's problem

import { T, apiClient, assert, launch, need, run, shot, step } from "./lib.mjs";

const URL_ = need("CORRAL_UI_URL");
const TOKEN = need("CORRAL_UI_TOKEN");
const HOST_OK = need("HOST_OK");
const HOST_BLOCKED = need("HOST_BLOCKED");
const PEER_ENDPOINT = need("PEER_ENDPOINT");
const PROBLEM = need("PROBLEM");
const apiGet = apiClient(URL_, TOKEN);

async function hostPages(ctx) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  const network = await apiGet("/network");
  const subnetOf = (name) => network.hosts.find((h) => h.host === name).subnet;

  await step(`${HOST_OK}'s page: its subnet, its tunnel up, ${HOST_BLOCKED} as a peer with a handshake and bytes`, async () => {
    await page.goto(`${URL_}/#token=${TOKEN}`);
    await page.getByTestId("nav-hosts").waitFor({ timeout: T });
    await page.goto(`${URL_}/#/hosts/${encodeURIComponent(HOST_OK)}`);
    await page.getByTestId("host-subnet").filter({ hasText: subnetOf(HOST_OK) }).waitFor({ timeout: T });
    const state = await page.getByTestId("tunnel-state").textContent();
    assert(state.includes("tunnel up"), `the tunnel's state reads: ${state}`);
    const row = page.locator(`[data-testid=tunnel-peer][data-peer="${HOST_BLOCKED}"]`);
    await row.waitFor({ timeout: T });
    const endpoint = await row.getByTestId("peer-endpoint").textContent();
    assert(endpoint === PEER_ENDPOINT, `the peer's endpoint reads ${endpoint}, not ${PEER_ENDPOINT}`);
    const rx = await row.getByTestId("peer-rx").textContent();
    assert(/\d+(\.\d)? (B|KiB|MiB)/.test(rx), `the bytes received read: ${rx}`);
    const handshake = row.getByTestId("peer-handshake");
    const first = await handshake.textContent();
    assert(/\d+ (s|min) ago/.test(first), `the last handshake reads: ${first}`);
    // The time ticks on its own, between the page's fetches.
    await page.waitForFunction(
      ([sel, was]) => document.querySelector(sel)?.textContent !== was,
      [`[data-testid=tunnel-peer][data-peer="${HOST_BLOCKED}"] [data-testid=peer-handshake]`, first],
      { timeout: 5_000 },
    );
    await shot(page, "host-network");
  });

  await step(`${HOST_BLOCKED}'s page: the problem says which peer and what to check; that peer's handshake is never`, async () => {
    await page.goto(`${URL_}/#/hosts/${encodeURIComponent(HOST_BLOCKED)}`);
    const problem = page.getByTestId("host-network-problem");
    await problem.waitFor({ timeout: T });
    const text = await problem.textContent();
    assert(text.includes(PROBLEM) && text.includes("must reach this host"), `the problem reads: ${text}`);
    const row = page.locator(`[data-testid=tunnel-peer][data-peer="${HOST_OK}"]`);
    await row.waitFor({ timeout: T });
    const handshake = await row.getByTestId("peer-handshake").textContent();
    assert(handshake === "never", `the blocked peer's handshake reads: ${handshake}`);
  });
}

await run(async () => {
  const ctx = await launch();
  await hostPages(ctx);
});
