// Live updates: one event-stream connection per selected environment, and `useLive`, which
// fetches a resource list and refetches it (debounced) when the stream says it changed. There are
// no polling loops: when the stream is down the UI says so and reconnects with backoff, and on
// reconnecting it refetches everything, since changes may have been missed meanwhile.

import { createContext, useCallback, useContext, useEffect, useRef, useState, type ReactNode } from "react";
import { onEnvChange, openEvents, selectedEnv, type ApiSocket } from "./api.ts";

export type Resource = "environments" | "hosts" | "stacks" | "services" | "containers";
export type LinkState = "connecting" | "live" | "reconnecting";

type Listener = (resources: Set<string> | "all") => void;

interface Live {
  state: LinkState;
  env: string | null;
  subscribe: (l: Listener) => () => void;
}

const LiveContext = createContext<Live>({ state: "connecting", env: null, subscribe: () => () => {} });

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15_000;

export function LiveProvider({ children }: { children: ReactNode }) {
  const [env, setEnv] = useState(selectedEnv());
  const [state, setState] = useState<LinkState>("connecting");
  const listeners = useRef(new Set<Listener>());

  useEffect(() => onEnvChange(setEnv), []);

  useEffect(() => {
    let ws: ApiSocket | null = null;
    let timer: number | undefined;
    let attempt = 0;
    let stopped = false;
    const emit = (r: Set<string> | "all") => listeners.current.forEach((l) => l(r));
    const connect = () => {
      setState(attempt === 0 ? "connecting" : "reconnecting");
      ws = openEvents((f) => {
        if (f.type === "hello") {
          // Whatever changed while the stream was down was not announced: refetch it all.
          if (attempt > 0) emit("all");
          attempt = 0;
          setState("live");
        } else if (f.type === "changed") {
          emit(new Set(f.resources));
        }
      });
      ws.onclose = () => {
        if (stopped) return;
        // The stream also ends when its environment is removed: let the environment list
        // refetch, so the UI can notice and show one that exists (envFallback.ts).
        emit(new Set(["environments"]));
        attempt++;
        setState("reconnecting");
        const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt - 1, 5));
        timer = window.setTimeout(connect, delay * (0.75 + Math.random() * 0.5));
      };
    };
    connect();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
      ws?.close();
    };
  }, [env]);

  const subscribe = useCallback((l: Listener) => {
    listeners.current.add(l);
    return () => {
      listeners.current.delete(l);
    };
  }, []);

  return <LiveContext.Provider value={{ state, env, subscribe }}>{children}</LiveContext.Provider>;
}

export function useLiveState(): { state: LinkState; env: string | null } {
  const { state, env } = useContext(LiveContext);
  return { state, env };
}

export interface Loaded<T> {
  data: T | undefined;
  error: Error | null;
  loading: boolean;
  reload: () => void;
}

const DEBOUNCE_MS = 150;

/**
 * Fetches with `fetcher` now, whenever `key` or the environment changes, and (debounced) whenever
 * the event stream reports a change to one of `resources`.
 */
export function useLive<T>(key: string, resources: Resource[], fetcher: (signal: AbortSignal) => Promise<T>): Loaded<T> {
  const { subscribe, env } = useContext(LiveContext);
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(true);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const inFlight = useRef<AbortController | null>(null);
  const resourcesKey = resources.join(",");

  const load = useCallback(() => {
    inFlight.current?.abort();
    const ctl = new AbortController();
    inFlight.current = ctl;
    fetcherRef
      .current(ctl.signal)
      .then((d) => {
        if (ctl.signal.aborted) return;
        setData(d);
        setError(null);
        setLoading(false);
      })
      .catch((e: unknown) => {
        if (ctl.signal.aborted || (e instanceof DOMException && e.name === "AbortError")) return;
        setError(e instanceof Error ? e : new Error(String(e)));
        setLoading(false);
      });
  }, []);

  // A new key or environment: what is shown belongs to something else, so start over.
  useEffect(() => {
    setData(undefined);
    setError(null);
    setLoading(true);
    load();
    return () => inFlight.current?.abort();
  }, [key, env, load]);

  useEffect(() => {
    const wanted = new Set(resourcesKey.split(","));
    let timer: number | undefined;
    const off = subscribe((changed) => {
      if (changed !== "all" && ![...changed].some((r) => wanted.has(r))) return;
      // Coalesce a burst into one refetch, without letting a steady stream postpone it forever.
      if (timer !== undefined) return;
      timer = window.setTimeout(() => {
        timer = undefined;
        load();
      }, DEBOUNCE_MS);
    });
    return () => {
      off();
      window.clearTimeout(timer);
    };
  }, [subscribe, load, resourcesKey]);

  return { data, error, loading, reload: load };
}
