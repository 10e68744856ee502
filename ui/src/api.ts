// Every call the UI makes to the control plane lives in this module. The API is same-origin:
// the control plane serves this UI at `/`, and the desktop window loads the same build.

/** A Docker host as `GET /v1/hosts` returns it. */
export interface Host {
  name: string;
  state: string;
  address: string;
  docker_version: string;
  cpus: number;
  memory_bytes: number;
}

/** The API answered with an error status. */
export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** The API could not be reached at all (network error, server down, not JSON). */
export class ApiUnreachable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ApiUnreachable";
  }
}

/** Set by the desktop app before the UI runs: where its in-app control plane listens, and its token. */
interface DesktopConfig {
  api: string;
  token: string;
}
const DESKTOP = (window as unknown as { __CORRAL__?: DesktopConfig }).__CORRAL__;

const BASE = (DESKTOP?.api ?? "") + "/v1";

/** The API token: the desktop app's, or one a browser user passed once as `#token=…`. */
function token(): string | null {
  if (DESKTOP) return DESKTOP.token;
  const fromHash = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem("corral-token", fromHash);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return sessionStorage.getItem("corral-token");
}

async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    res = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiUnreachable(`cannot reach the control plane (${e instanceof Error ? e.message : String(e)})`);
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text.trim() || res.statusText;
    try {
      const j = JSON.parse(text) as { error?: string; message?: string };
      message = j.error ?? j.message ?? message;
    } catch {
      /* not JSON: keep the text */
    }
    throw new ApiError(res.status, `${method} ${BASE}${path}: ${res.status} ${message}`);
  }
  if (text === "") return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    // A static server without the API answers index.html for unknown paths.
    throw new ApiUnreachable(`${method} ${BASE}${path} did not answer JSON: is the control plane running?`);
  }
}

/** `GET /v1/hosts`: every host of the current environment. */
export function listHosts(signal?: AbortSignal): Promise<Host[]> {
  return request<Host[]>("GET", "/hosts", undefined, signal);
}
