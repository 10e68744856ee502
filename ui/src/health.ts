import type { Service } from "./api.ts";

export type Health = "healthy" | "degraded" | "down" | "stopped";

/**
 * From the service's state when the control plane sends one (failing: down; anything on its way
 * or partly failing: degraded); else all wanted instances running: healthy; some: degraded;
 * none: down; stopped or scaled to 0: stopped.
 */
export function serviceHealth(s: Service): Health {
  if (s.state === "stopped" || s.scale === 0) return "stopped";
  switch (s.status) {
    case "active":
      return "healthy";
    case "failing":
      return "down";
    case "starting":
    case "pulling":
    case "degraded":
      return "degraded";
  }
  if (s.running >= s.scale) return "healthy";
  if (s.running > 0) return "degraded";
  return "down";
}

export const HEALTH_COLOR: Record<Health, string> = {
  healthy: "green",
  degraded: "yellow",
  down: "red",
  stopped: "gray",
};
