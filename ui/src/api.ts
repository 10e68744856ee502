// Every call the UI makes to the control plane lives in this module: REST requests, the event
// stream and container logs. The API is same-origin when the control plane serves this UI at `/`;
// the desktop window loads the same build from its own protocol and is told where the API is.

export interface Environment {
  name: string;
  created_at: string;
  hosts?: number;
  stacks?: number;
  /** The caller's role here: `admin`, `owner`, `member`, `restricted` or `read-only`. */
  role?: Role;
}

export type Role = "admin" | "owner" | "member" | "restricted" | "read-only";

/** `GET /v1/whoami`: who the credential is and its role in each environment it sees. */
export interface WhoAmI {
  user: string;
  admin: boolean;
  key: string | null;
  environments: { name: string; role: Role }[];
}

export interface LoginAnswer {
  token: string;
  user: string;
  expires_at: string;
}

/** A Docker host as `GET /v1/hosts` returns it. */
export interface Host {
  id: string;
  name: string;
  state: string;
  state_since?: string | null;
  last_seen?: string | null;
  status?: string;
  address: string;
  docker_version: string;
  cpus: number;
  memory_bytes: number;
  os?: string;
  kernel?: string;
  agent_version?: string;
  labels: Record<string, string>;
  in_sync?: boolean;
  containers: number;
  /** A deactivated host gets no new containers; what runs there keeps running. */
  deactivated?: boolean;
  /** When its credential was revoked: its agent must join with the join token again. */
  revoked_at?: string | null;
  /** What is wrong with this host (what was refused from its agent, its tunnel), and what to check. */
  problem?: string | null;
}

export interface JoinCommand {
  environment: string;
  server_url: string;
  token: string;
  /** The CA agents pin (`sha256:HEX`), when the control plane speaks TLS to hosts. */
  ca_fingerprint?: string;
  command: string;
}

/** `GET /v1/users`. */
export interface User {
  name: string;
  admin: boolean;
  /** Whether the user can sign in with a password (otherwise only through API keys). */
  password: boolean;
  created_at: string;
}

/** `GET /v1/groups`. */
export interface Group {
  name: string;
  members: string[];
  created_at: string;
}

export type MemberKind = "user" | "group";
/** The roles a member can have in an environment (`admin` is a user's, not a membership's). */
export type EnvRole = Exclude<Role, "admin">;
export const ENV_ROLES: EnvRole[] = ["owner", "member", "restricted", "read-only"];

/** `GET /v1/members?env=`: who has which role in the environment. */
export interface Membership {
  environment: string;
  kind: MemberKind;
  name: string;
  role: EnvRole;
}

/** Whether a registry has a password; the password itself is never shown. */
export type RegistryPassword = "none" | "set" | "must_be_set_again";

/** `GET /v1/registries?env=`: an image registry of the environment, with its login and CA. */
export interface Registry {
  host: string;
  username: string | null;
  password: RegistryPassword;
  ca_pem: string | null;
  created_at: string;
  updated_at: string;
  /** How many services of the environment run an image from it. */
  services: number;
}

/** `PUT /v1/registries/{host}`: login (both or neither) and CA, replacing the entry's. */
export interface RegistryInput {
  username?: string;
  password?: string;
  ca_pem?: string;
}

/** `GET /v1/audit?env=`: one request that changed (or tried to change) something, newest first. */
export interface AuditEntry {
  id: number;
  at: string;
  /** Null when the request carried no valid credential. */
  user: string | null;
  key: string | null;
  /** `ui`, `cli` or `api`. */
  client: string;
  remote: string | null;
  method: string;
  path: string;
  environment: string | null;
  target: string | null;
  /** The HTTP status of the answer: 2xx done, 4xx refused, 5xx failed. */
  status: number;
  /** The entry as a sentence: "ann scaled WEB-Server/web to 4". */
  summary?: string;
}

export interface Stack {
  id: number;
  name: string;
  created_at: string;
  services: number;
}

export interface Port {
  host_port: number | null;
  container_port: number;
  protocol: string;
}

export interface LbPort {
  listen: number;
  target: number;
  mode: string;
}

export interface LbRule {
  host?: string | null;
  path?: string | null;
  service: string;
  port: number;
}

export interface LbSpec {
  ports: LbPort[];
  targets: string[];
  rules: LbRule[];
  global: boolean;
}

export interface Service {
  id: number;
  stack: string;
  name: string;
  kind: "container" | "load-balancer" | string;
  image: string;
  command: string[];
  env: string[];
  ports: Port[];
  labels: Record<string, string>;
  constraints: string[];
  lb?: LbSpec | null;
  scale: number;
  revision: number;
  /** `active` or `stopped`; older control planes do not send it. */
  state?: string;
  placed: number;
  /** Instances running on hosts that are heard from, and not failing. */
  running: number;
  upgraded: number;
  unplaced: string[];
  /** `missing` (also when absent), `always` or `never`. */
  pull_policy?: string;
  /** Which network its containers join: `managed` (also when absent), `bridge`, `host`, `none`. */
  network?: string;
  /** What its containers add up to: `active`, `starting`, `pulling`, `degraded`, `failing`, `stopped`. */
  status?: string;
  /** The reason that matters most, e.g. `h1: cannot pull app:2: image not found in the registry (…)`. */
  reason?: string | null;
  /** Instances with a failure reason. */
  failing?: number;
  /** Hosts pulling the service's image, and how far each is. */
  pulls?: { host: string; image: string; percent: number }[];
  created_at: string;
  updated_at: string;
}

export interface Container {
  name: string;
  stack: string;
  service: string;
  instance: number;
  host: string;
  host_state: string;
  /** The host's agent has been heard from lately (false: the host may be gone). */
  host_responding?: boolean;
  /** The engine's word, or `pending`, `pulling` (its image is on its way), `failed` (it could not be made). */
  state: string;
  status: string;
  reason?: string | null;
  /** Percent of its image pulled, while it waits for it. */
  progress?: number | null;
  /** The reason is a failure to act on (shown red). */
  failing?: boolean;
  /** The last lines it printed, when it exited. */
  log?: string[];
  /** Its address; the host's own for a container on the host's network. */
  ip: string | null;
  /** The network it was made on: `managed`, `bridge`, `host` or `none`. */
  network?: string;
  ports: Port[];
  docker_id: string | null;
  /** Kept stopped on its own (Stop on the container) until started again. */
  stopped?: boolean;
}

/** `GET /v1/containers/{name}`: a list item plus what the engine knows about it. */
export interface ContainerDetails extends Container {
  image?: string;
  command?: string[];
  env?: string[];
  labels?: Record<string, string>;
  created_at?: string | null;
  started_at?: string | null;
  exit_code?: number | null;
  restart_count?: number | null;
}

export interface NewService {
  name: string;
  image: string;
  command?: string[];
  env?: string[];
  ports?: string[];
  constraints?: string[];
  scale: number;
  /** `missing` (default), `always` or `never`. */
  pull_policy?: string;
  /** `managed` (default), `bridge`, `host` or `none`. */
  network?: string;
}

export interface NewLoadBalancer {
  name: string;
  kind: "load-balancer";
  scale: number;
  constraints?: string[];
  lb: { ports: string[]; targets: string[]; rules: string[]; global: boolean };
}

/** `POST …/upgrade`: what changes; anything left out stays as it is. */
export interface ServiceUpgrade {
  image?: string;
  command?: string[];
  env?: string[];
  /** Moves the containers to another network, one at a time. */
  network?: string;
}

/** `GET /v1/settings`: the URL hosts join at, and where it comes from. */
export interface Settings {
  agent_url: string;
  /** `command-line` (`--advertise-url`), `settings` (stored, editable here) or `detected`. */
  agent_url_source: "command-line" | "settings" | "detected";
  advertise_url: string | null;
  detected_url: string;
  notes: string[];
  updated_at: string | null;
}

/** `POST /v1/restore`: what the restore did. */
export interface RestoreInfo {
  restored: boolean;
  schema_version: number;
  /** The database as it was before, kept in the data dir (restore it to undo). */
  safety_copy: string;
  join_tokens_replaced: string[];
}

/** Bytes done of a transfer, and the whole when known. */
export type Progress = { done: number; total: number | null };

/** The API answered with an error status: `{code, message, field?}`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | null;
  constructor(status: number, code: string, message: string, field: string | null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
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
  agentUrl?: string;
}
const DESKTOP = (window as unknown as { __CORRAL__?: DesktopConfig }).__CORRAL__;

/** Whether the UI runs inside the desktop app (which signs it in itself). */
export const inDesktop = DESKTOP !== undefined;

/** The URL agents on the LAN use to reach the desktop's control plane; undefined in a browser. */
export const desktopAgentUrl: string | undefined = DESKTOP?.agentUrl;

const BASE = (DESKTOP?.api ?? "") + "/v1";

/** The API token: the desktop app's, or one a browser user passed once as `#token=…`. */
function token(): string | null {
  if (DESKTOP) return DESKTOP.token;
  consumeTokenLink();
  return sessionStorage.getItem("corral-token");
}

/** Keeps the token of a `#token=…` link (then drops it from the address bar); true if there was one. */
export function consumeTokenLink(): boolean {
  // The hash also carries the router's path (`#/hosts`), so only a `token=` hash is consumed.
  const hash = window.location.hash.slice(1);
  if (!hash.startsWith("token=") && !hash.includes("&token=")) return false;
  const fromHash = new URLSearchParams(hash).get("token");
  if (!fromHash) return false;
  sessionStorage.setItem("corral-token", fromHash);
  history.replaceState(null, "", window.location.pathname + window.location.search + "#/");
  return true;
}
// Consume a `#token=` link before the hash router reads the hash as a path.
token();

/** Forgets a token passed as a link: after a login the session cookie speaks for the browser. */
function forgetToken(): void {
  sessionStorage.removeItem("corral-token");
}

// A 401 on any request means the credential is gone (expired, revoked, signed out elsewhere).
const unauthorizedListeners = new Set<() => void>();

export function onUnauthorized(listener: () => void): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

// ---------------------------------------------------------------------------------------------
// Selected environment: remembered across visits, passed as `?env=` on every request.

const ENV_KEY = "corral-env";
let currentEnv: string | null = localStorage.getItem(ENV_KEY);
const envListeners = new Set<(env: string | null) => void>();

export function selectedEnv(): string | null {
  return currentEnv;
}

export function selectEnv(env: string | null): void {
  if (env === currentEnv) return;
  currentEnv = env;
  if (env) localStorage.setItem(ENV_KEY, env);
  else localStorage.removeItem(ENV_KEY);
  envListeners.forEach((l) => l(env));
}

export function onEnvChange(listener: (env: string | null) => void): () => void {
  envListeners.add(listener);
  return () => envListeners.delete(listener);
}

function withQuery(path: string, query: Record<string, string | number | boolean | null | undefined>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined) params.set(k, String(v));
  const qs = params.toString();
  if (!qs) return path;
  return path + (path.includes("?") ? "&" : "?") + qs;
}

const seg = encodeURIComponent;

/** What every request carries: JSON wanted, the UI named for the audit log, the token when there is one. */
function baseHeaders(): Record<string, string> {
  const headers: Record<string, string> = { Accept: "application/json", "X-Corral-Client": "ui" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  return headers;
}

/** The ApiError of a failed answer (`{code, message, field}`, or its text); a 401 tells the session. */
function failure(status: number, statusText: string, text: string, path: string): ApiError {
  let code = "error";
  let message = text.trim() || statusText || `HTTP ${status}`;
  let field: string | null = null;
  try {
    const j = JSON.parse(text) as { code?: string; message?: string; field?: string };
    code = j.code ?? code;
    message = j.message ?? message;
    field = j.field ?? null;
  } catch {
    /* not JSON: keep the text */
  }
  // A refused login is the login form's to show; any other 401 means signing in (again).
  if (status === 401 && path !== "/login") {
    if (inDesktop || unauthorizedListeners.size === 0) {
      message = `${message} — open the link the control plane printed (it carries the token)`;
    }
    unauthorizedListeners.forEach((l) => l());
  }
  return new ApiError(status, code, message, field);
}

async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const url = BASE + withQuery(path, { env: currentEnv });
  let res: Response;
  try {
    // The client header marks the UI's changes as such in the audit log.
    const headers = baseHeaders();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    res = await fetch(url, {
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
  if (!res.ok) throw failure(res.status, res.statusText, text, path);
  if (text === "") return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    // A static server without the API answers index.html for unknown paths.
    throw new ApiUnreachable(`${method} ${BASE}${path} did not answer JSON: is the control plane running?`);
  }
}

export const api = {
  whoami: (signal?: AbortSignal) => request<WhoAmI>("GET", "/whoami", undefined, signal),
  /** Starts a session; the answer also sets the `corral_session` cookie the browser then sends. */
  login: async (user: string, password: string) => {
    const answer = await request<LoginAnswer>("POST", "/login", { user, password });
    // A stale token from a link would otherwise take precedence over the new session's cookie.
    forgetToken();
    return answer;
  },
  /** Ends the session and forgets any token from a link; the caller then shows the login page. */
  logout: async () => {
    try {
      await request<void>("POST", "/logout");
    } finally {
      forgetToken();
    }
  },
  environments: (signal?: AbortSignal) => request<Environment[]>("GET", "/environments", undefined, signal),
  createEnvironment: (name: string) => request<Environment>("POST", "/environments", { name }),
  removeEnvironment: (name: string) => request<void>("DELETE", `/environments/${seg(name)}`),
  renameEnvironment: (name: string, to: string) => request<Environment>("PATCH", `/environments/${seg(name)}`, { name: to }),
  hosts: (signal?: AbortSignal) => request<Host[]>("GET", "/hosts", undefined, signal),
  host: (name: string, signal?: AbortSignal) => request<Host>("GET", `/hosts/${seg(name)}`, undefined, signal),
  deactivateHost: (name: string) => request<Host>("POST", `/hosts/${seg(name)}/deactivate`),
  activateHost: (name: string) => request<Host>("POST", `/hosts/${seg(name)}/activate`),
  removeHost: (name: string) => request<void>("DELETE", `/hosts/${seg(name)}`),
  revokeHost: (name: string) => request<Host>("POST", `/hosts/${seg(name)}/revoke`),
  joinCommand: (signal?: AbortSignal) => request<JoinCommand>("GET", "/hosts/join-command", undefined, signal),
  /** A new join token for the environment: the old one is refused from now on. */
  rotateJoinToken: () => request<JoinCommand>("POST", "/hosts/join-command/rotate"),
  users: (signal?: AbortSignal) => request<User[]>("GET", "/users", undefined, signal),
  // `admin` is sent only when asked for, so creating an ordinary user needs nothing more of the API.
  createUser: (name: string, password: string, admin: boolean) =>
    request<User>("POST", "/users", { name, password, admin }),
  removeUser: (name: string) => request<void>("DELETE", `/users/${seg(name)}`),
  setPassword: (name: string, password: string) => request<void>("PUT", `/users/${seg(name)}/password`, { password }),
  groups: (signal?: AbortSignal) => request<Group[]>("GET", "/groups", undefined, signal),
  createGroup: (name: string) => request<Group>("POST", "/groups", { name }),
  removeGroup: (name: string) => request<void>("DELETE", `/groups/${seg(name)}`),
  addToGroup: (group: string, user: string) => request<Group>("POST", `/groups/${seg(group)}/members`, { user }),
  removeFromGroup: (group: string, user: string) => request<Group>("DELETE", `/groups/${seg(group)}/members/${seg(user)}`),
  members: (signal?: AbortSignal) => request<Membership[]>("GET", "/members", undefined, signal),
  /** Gives a user or group a role in the selected environment, replacing the one it had. */
  setMember: (kind: MemberKind, name: string, role: EnvRole) =>
    // `kind:NAME` says which one is meant when a user and a group share the name.
    request<Membership>("POST", "/members", { name: `${kind}:${name}`, role }),
  removeMember: (kind: MemberKind, name: string) => request<void>("DELETE", `/members/${seg(kind)}/${seg(name)}`),
  registries: (signal?: AbortSignal) => request<Registry[]>("GET", "/registries", undefined, signal),
  /** Adds the registry, or replaces the entry of that host (login and CA together). */
  putRegistry: (host: string, input: RegistryInput) => request<Registry>("PUT", `/registries/${seg(host)}`, input),
  removeRegistry: (host: string) => request<Registry>("DELETE", `/registries/${seg(host)}`),
  audit: (limit: number, signal?: AbortSignal) => request<AuditEntry[]>("GET", withQuery("/audit", { limit }), undefined, signal),
  stacks: (signal?: AbortSignal) => request<Stack[]>("GET", "/stacks", undefined, signal),
  createStack: (name: string) => request<Stack>("POST", "/stacks", { name }),
  removeStack: (name: string) => request<void>("DELETE", `/stacks/${seg(name)}`),
  services: (stack: string, signal?: AbortSignal) =>
    request<Service[]>("GET", `/stacks/${seg(stack)}/services`, undefined, signal),
  service: (stack: string, service: string, signal?: AbortSignal) =>
    request<Service>("GET", `/stacks/${seg(stack)}/services/${seg(service)}`, undefined, signal),
  createService: (stack: string, body: NewService | NewLoadBalancer) =>
    request<Service>("POST", `/stacks/${seg(stack)}/services`, body),
  scaleService: (stack: string, service: string, scale: number) =>
    request<Service>("PUT", `/stacks/${seg(stack)}/services/${seg(service)}/scale`, { scale }),
  stopService: (stack: string, service: string) =>
    request<Service>("POST", `/stacks/${seg(stack)}/services/${seg(service)}/stop`),
  startService: (stack: string, service: string) =>
    request<Service>("POST", `/stacks/${seg(stack)}/services/${seg(service)}/start`),
  removeService: (stack: string, service: string) =>
    request<void>("DELETE", `/stacks/${seg(stack)}/services/${seg(service)}`),
  containers: (filter: { stack?: string; service?: string } = {}, signal?: AbortSignal) =>
    request<Container[]>("GET", withQuery("/containers", filter), undefined, signal),
  container: (name: string, signal?: AbortSignal) =>
    request<ContainerDetails>("GET", `/containers/${seg(name)}`, undefined, signal),
  removeContainer: (name: string) => request<void>("DELETE", `/containers/${seg(name)}`),
  restartContainer: (name: string) => request<Container>("POST", `/containers/${seg(name)}/restart`),
  stopContainer: (name: string) => request<Container>("POST", `/containers/${seg(name)}/stop`),
  startContainer: (name: string) => request<Container>("POST", `/containers/${seg(name)}/start`),
  /** A rolling upgrade to a new image, command or environment, one container at a time. */
  upgradeService: (stack: string, service: string, change: ServiceUpgrade) =>
    request<Service>("POST", `/stacks/${seg(stack)}/services/${seg(service)}/upgrade`, change),
  settings: (signal?: AbortSignal) => request<Settings>("GET", "/settings", undefined, signal),
  /** Stores the URL hosts join at (`null` forgets it: the detected one applies again). */
  setAdvertiseUrl: (url: string | null) => request<Settings>("PATCH", "/settings", { advertise_url: url }),
  backup: (onProgress: (p: Progress) => void) => downloadBackup(onProgress),
  restore: (file: Blob, force: boolean, onProgress: (p: Progress) => void) => uploadRestore(file, force, onProgress),
};

/** `GET /v1/backup`, read as it arrives (with progress), as a file named as the API names it. */
async function downloadBackup(onProgress: (p: Progress) => void): Promise<{ blob: Blob; name: string }> {
  let res: Response;
  try {
    res = await fetch(BASE + "/backup", { headers: baseHeaders(), credentials: "same-origin" });
  } catch (e) {
    throw new ApiUnreachable(`cannot reach the control plane (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!res.ok) throw failure(res.status, res.statusText, await res.text(), "/backup");
  const total = Number(res.headers.get("Content-Length")) || null;
  const name = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") ?? "")?.[1] ?? "corral-backup.db";
  const chunks: Uint8Array[] = [];
  let done = 0;
  const reader = res.body!.getReader();
  for (;;) {
    const { done: end, value } = await reader.read();
    if (end) break;
    chunks.push(value);
    done += value.length;
    onProgress({ done, total });
  }
  return { blob: new Blob(chunks as BlobPart[], { type: "application/vnd.sqlite3" }), name };
}

/** `POST /v1/restore[?force=true]` with the file as the body; XHR, since fetch reports no upload progress. */
function uploadRestore(file: Blob, force: boolean, onProgress: (p: Progress) => void): Promise<RestoreInfo> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", BASE + withQuery("/restore", { force: force || null }));
    for (const [k, v] of Object.entries(baseHeaders())) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => onProgress({ done: e.loaded, total: e.lengthComputable ? e.total : null });
    xhr.onerror = () => reject(new ApiUnreachable("cannot reach the control plane (the upload was cut off)"));
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText) as RestoreInfo);
        } catch {
          reject(new ApiUnreachable("the restore's answer is not JSON: is the control plane running?"));
        }
      } else {
        reject(failure(xhr.status, xhr.statusText, xhr.responseText, "/restore"));
      }
    };
    xhr.send(file);
  });
}

// ---------------------------------------------------------------------------------------------
// WebSockets. A browser sends the session cookie with a WebSocket by itself; signed in by a token
// instead (the desktop window, a `#token=` link), the UI asks for a single-use ticket right before
// connecting and passes that: the token itself never goes into a URL.

type Query = Record<string, string | number | boolean | null | undefined>;

/** One of the API's WebSockets, opened once a ticket (when one is needed) is in hand. */
export class ApiSocket {
  onopen: (() => void) | null = null;
  onclose: (() => void) | null = null;
  onmessage: ((m: MessageEvent) => void) | null = null;
  private ws: WebSocket | null = null;
  private closed = false;

  constructor(path: string, query: Query) {
    void this.open(path, query);
  }

  private async open(path: string, query: Query) {
    let ticket: string | undefined;
    if (token()) {
      try {
        ticket = (await request<{ ticket: string }>("POST", "/ws-ticket", { path: new URL(BASE + path, window.location.href).pathname })).ticket;
      } catch {
        // Said like a dropped connection: the caller reconnects (or shows it ended).
        if (!this.closed) this.onclose?.();
        return;
      }
    }
    if (this.closed) return;
    const url = new URL(BASE + withQuery(path, { ...query, ticket }), window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url.toString());
    ws.onopen = () => this.onopen?.();
    ws.onclose = () => this.onclose?.();
    ws.onmessage = (m) => this.onmessage?.(m);
    this.ws = ws;
  }

  close(): void {
    this.closed = true;
    this.ws?.close();
  }
}

/** Which resource lists of an environment changed (`/v1/events`). */
export type EventFrame =
  | { type: "hello"; environment: string | null }
  | { type: "changed"; environment: string | null; resources: string[] };

/** Opens the event stream of the selected environment; the caller reconnects when it closes. */
export function openEvents(onFrame: (f: EventFrame) => void): ApiSocket {
  const ws = new ApiSocket("/events", { env: currentEnv });
  ws.onmessage = (m) => {
    try {
      onFrame(JSON.parse(String(m.data)) as EventFrame);
    } catch {
      /* a frame that is not JSON carries nothing the UI can act on */
    }
  };
  return ws;
}

export type LogFrame = { stream: "stdout" | "stderr"; line: string } | { type: "end"; reason: string };

/** Streams a container's log (`/v1/containers/{name}/logs`), last `tail` lines first. */
export function openLogs(name: string, onFrame: (f: LogFrame) => void, tail = 200): ApiSocket {
  const ws = new ApiSocket(`/containers/${seg(name)}/logs`, { env: currentEnv, tail, follow: true });
  ws.onmessage = (m) => {
    try {
      onFrame(JSON.parse(String(m.data)) as LogFrame);
    } catch {
      onFrame({ stream: "stdout", line: String(m.data) });
    }
  };
  return ws;
}

// ---------------------------------------------------------------------------------------------
// Monitoring: history per host, container and service, the dashboard summary, the live stream.

/** One point of history; numbers carry their unit in the name. */
export interface StatsPoint {
  ts: number;
  cpu_percent: number;
  memory_bytes: number;
  memory_limit_bytes: number;
  network_rx_bytes_per_second: number;
  network_tx_bytes_per_second: number;
  io_read_bytes_per_second: number;
  io_write_bytes_per_second: number;
  disk_used_bytes?: number;
  disk_total_bytes?: number;
  load1?: number;
  containers?: number;
}

export interface StatsHistory {
  kind: "host" | "container" | "service";
  name: string;
  from: number;
  to: number;
  step_seconds: number;
  resolution: "raw" | "minute" | "hour";
  points: StatsPoint[];
}

/** A host's latest figures (summary and live frames). */
export interface HostNow {
  host: string;
  at_ms: number;
  cpu_percent: number;
  cpu_core_percent: number[];
  load1: number;
  memory_used_bytes: number;
  memory_total_bytes: number;
  disk_used_bytes: number;
  disk_total_bytes: number;
  network_rx_bytes_per_second: number;
  network_tx_bytes_per_second: number;
}

export interface ContainerNow {
  name: string;
  host: string;
  stack: string;
  service: string;
  cpu_percent: number;
  memory_bytes: number;
  memory_limit_bytes: number;
  network_rx_bytes_per_second: number;
  network_tx_bytes_per_second: number;
}

export interface ServiceNow {
  stack: string;
  service: string;
  containers: number;
  cpu_percent: number;
  memory_bytes: number;
}

export interface StatsSummary {
  environment: string;
  hosts: number;
  containers: number;
  cpu_cores_used: number;
  cpu_cores: number;
  memory_used_bytes: number;
  memory_total_bytes: number;
  network_rx_bytes_per_second: number;
  network_tx_bytes_per_second: number;
  busiest_hosts: HostNow[];
  busiest_containers: ContainerNow[];
  busiest_services: ServiceNow[];
}

export type LiveStatsFrame = HostNow & { containers: ContainerNow[] };

/** What a history is of: `GET /v1/{hosts|containers}/{name}/stats` or a service's. */
export type StatsTarget = { kind: "host" | "container"; name: string } | { kind: "service"; stack: string; service: string };

function statsPath(t: StatsTarget): string {
  switch (t.kind) {
    case "host":
      return `/hosts/${seg(t.name)}/stats`;
    case "container":
      return `/containers/${seg(t.name)}/stats`;
    case "service":
      return `/stacks/${seg(t.stack)}/services/${seg(t.service)}/stats`;
  }
}

export const statsApi = {
  /** `since` is an age such as `15m`, `1h`, `1d`. */
  history: (target: StatsTarget, since: string, signal?: AbortSignal) =>
    request<StatsHistory>("GET", withQuery(statsPath(target), { from: `-${since}` }), undefined, signal),
  summary: (signal?: AbortSignal) => request<StatsSummary>("GET", "/stats/summary", undefined, signal),
};

/** Live host frames (`/v1/stats/live`); while it is open, agents report every second. */
export function openLiveStats(onFrame: (f: LiveStatsFrame) => void): ApiSocket {
  const ws = new ApiSocket("/stats/live", { env: currentEnv });
  ws.onmessage = (m) => {
    try {
      onFrame(JSON.parse(String(m.data)) as LiveStatsFrame);
    } catch {
      /* not a frame */
    }
  };
  return ws;
}

// ---------------------------------------------------------------------------------------------
// Desktop settings: Tauri commands of the desktop app (see docs/desktop.md), absent in a browser.

export type OnClose = "ask" | "tray" | "stop";

export interface DesktopSettings {
  agent_port: number;
  on_close: OnClose;
  /** The port the control plane listens on in this run. */
  listening_port: number;
  /** The saved agent_port differs from the listening one: it applies at the next start. */
  restart_needed: boolean;
}

type TauriInvoke = (cmd: string, args?: Record<string, unknown>) => Promise<unknown>;

function tauriInvoke(): TauriInvoke | null {
  const internals = (window as unknown as { __TAURI_INTERNALS__?: { invoke?: TauriInvoke } }).__TAURI_INTERNALS__;
  return typeof internals?.invoke === "function" ? internals.invoke.bind(internals) : null;
}

/** Whether the desktop's settings commands can be called from here. */
export const hasDesktopSettings = inDesktop && tauriInvoke() !== null;

/** A refused command: `{code, message}` from the app, or the text of a malformed call. */
export class DesktopError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "DesktopError";
    this.code = code;
  }
}

async function invoke<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  const call = tauriInvoke();
  if (!call) throw new DesktopError("unavailable", "settings can only be changed in the desktop app");
  try {
    return (await call(cmd, args)) as T;
  } catch (e) {
    if (e && typeof e === "object" && "message" in e) {
      const { code, message } = e as { code?: unknown; message?: unknown };
      throw new DesktopError(typeof code === "string" ? code : "error", String(message));
    }
    throw new DesktopError("error", String(e));
  }
}

export const desktopApi = {
  settings: () => invoke<DesktopSettings>("get_settings"),
  changeSettings: (change: { agent_port?: number; on_close?: OnClose }) => invoke<DesktopSettings>("set_settings", { change }),
};

/** One tunnel peer of a host, as the host's agent last reported it. */
export interface TunnelPeer {
  host_id: string;
  host: string;
  subnet: string;
  endpoint: string;
  /** Seconds since the last completed handshake, as of the answer; null: never. */
  last_handshake_secs: number | null;
  rx_bytes: number;
  tx_bytes: number;
}

export interface HostTunnel {
  state: "up" | "down";
  error: string | null;
  port: number;
  peers: TunnelPeer[];
}

export interface HostNetwork {
  host: string;
  host_state: string;
  subnet: string | null;
  address: string;
  public_key: string | null;
  tunnel_port: number | null;
  /** Null while the host's agent is not connected or runs no tunnel. */
  tunnel: HostTunnel | null;
  problem: string | null;
}

export interface NetworkView {
  environment: string;
  subnet: string | null;
  hosts: HostNetwork[];
}

export const networkApi = {
  network: (signal?: AbortSignal) => request<NetworkView>("GET", "/network", undefined, signal),
};
