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

const BASE = "/v1";

async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    res = await fetch(BASE + path, {
      method,
      headers: body === undefined ? { Accept: "application/json" } : { Accept: "application/json", "Content-Type": "application/json" },
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
