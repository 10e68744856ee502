// One clock for every relative time on screen ("21 s ago"): a single 1 s timer that runs while
// anything shows such a time, however many rows do (lists are virtualised and hold thousands).

import { useSyncExternalStore } from "react";
import { formatSince } from "./format.ts";

const listeners = new Set<() => void>();
let now = Date.now();
let timer: number | undefined;

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  if (timer === undefined) {
    now = Date.now();
    timer = window.setInterval(() => {
      now = Date.now();
      listeners.forEach((l) => l());
    }, 1000);
  }
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0) {
      window.clearInterval(timer);
      timer = undefined;
    }
  };
}

/** The time now, updated every second for as long as the component is mounted. */
export function useNow(): number {
  return useSyncExternalStore(subscribe, () => now);
}

/** An RFC 3339 time as "21 s ago (14:02:11)", ticking. */
export function Ago({ iso }: { iso: string | null | undefined }) {
  return <>{formatSince(iso, useNow())}</>;
}
