// The environment on screen may disappear: removed in another window, by another admin, or
// absent from a restored database; a user may also lose their role in it. Its event stream then
// ends (and cannot reopen), which makes the environment list refetch (see live.tsx); when the
// list no longer has it, the UI shows one that exists instead of reconnecting forever, and says
// so. The desktop app follows through the window title, which names the environment shown.

import { notifications } from "@mantine/notifications";
import { useEffect } from "react";
import { api, selectedEnv, type Environment } from "./api.ts";

/** Where to go when `gone` is not among `names`: the default environment, else the first. */
export function fallbackEnvironment(names: string[]): string | null {
  if (names.includes("Default")) return "Default";
  return names[0] ?? null;
}

/**
 * When `env` is not in `envs`, asks the API again (the list may be older than the selection, e.g.
 * just after an environment was created or renamed), and if it is still missing calls `switchTo`
 * with the fallback and shows a notification.
 */
export function useEnvironmentFallback(envs: Environment[] | undefined, env: string | null, switchTo: (name: string) => void) {
  const missing = envs !== undefined && envs.length > 0 && (env === null || !envs.some((e) => e.name === env));
  useEffect(() => {
    if (!missing) return;
    let cancelled = false;
    api.environments().then(
      (fresh) => {
        if (cancelled || selectedEnv() !== env) return;
        const names = fresh.map((e) => e.name);
        if (env !== null && names.includes(env)) return;
        const to = fallbackEnvironment(names);
        if (to === null) return;
        if (env !== null) {
          notifications.show({
            color: "orange",
            title: `Environment ${env} is no longer available`,
            message: `It was removed, or you may no longer see it. Showing ${to} instead.`,
            autoClose: 10_000,
          });
        }
        switchTo(to);
      },
      () => {
        /* the API is unreachable: the pages say so, and the next stream drop asks again */
      },
    );
    return () => {
      cancelled = true;
    };
    // `switchTo` changes every render; what matters is whether the environment is missing.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [missing, env, envs]);
}
