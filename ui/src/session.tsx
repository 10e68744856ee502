// Who is signed in, and what their role lets them do in the selected environment. A browser
// without a credential (or whose session ended) gets the login page; the desktop app and a
// `#token=` link sign the UI in by themselves. The API enforces every right: hiding what a role
// may not do only spares the user a refusal.

import { Center, Loader } from "@mantine/core";
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { ApiError, api, consumeTokenLink, inDesktop, onUnauthorized, selectEnv, selectedEnv, type Role, type WhoAmI } from "./api.ts";
import { useLive, useLiveState } from "./live.tsx";
import { LoginPage } from "./pages/LoginPage.tsx";

interface Session {
  /** Null when the control plane could not say (unreachable, or too old to have `/whoami`). */
  who: WhoAmI | null;
  setWho: (who: WhoAmI | null) => void;
  signOut: () => Promise<void>;
}

const SessionContext = createContext<Session>({ who: null, setWho: () => {}, signOut: async () => {} });

type Phase = "checking" | "login" | "in";

export function SessionGate({ children }: { children: ReactNode }) {
  const [phase, setPhase] = useState<Phase>("checking");
  const [who, setWho] = useState<WhoAmI | null>(null);

  const check = useCallback(async () => {
    try {
      const me = await api.whoami();
      // Start in an environment this user sees, before any page asks for one it may not.
      const names = me.environments.map((e) => e.name);
      const remembered = selectedEnv();
      if (names.length > 0 && (!remembered || !names.includes(remembered))) selectEnv(names.includes("Default") ? "Default" : names[0]!);
      setWho(me);
      setPhase("in");
    } catch (e) {
      setWho(null);
      // Anything but a refused credential is for the pages to report (e.g. the API is down).
      setPhase(e instanceof ApiError && e.status === 401 && !inDesktop ? "login" : "in");
    }
  }, []);

  useEffect(() => {
    void check();
  }, [check]);

  // A token link pasted into an open tab only changes the hash: sign in with it.
  useEffect(() => {
    const onHash = () => {
      if (consumeTokenLink()) void check();
    };
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, [check]);

  useEffect(
    () =>
      onUnauthorized(() => {
        if (inDesktop) return;
        setWho(null);
        setPhase("login");
      }),
    [],
  );

  const signOut = useCallback(async () => {
    try {
      await api.logout();
    } finally {
      setWho(null);
      setPhase("login");
    }
  }, []);

  if (phase === "checking") {
    return (
      <Center h="100vh">
        <Loader data-testid="session-checking" />
      </Center>
    );
  }
  if (phase === "login") return <LoginPage onSignedIn={() => void check()} />;
  return <SessionContext.Provider value={{ who, setWho, signOut }}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  return useContext(SessionContext);
}

const RANK: Record<Role, number> = { "read-only": 0, restricted: 1, member: 2, owner: 3, admin: 4 };

export interface Rights {
  /** Create, change and remove stacks, services and containers. */
  change: boolean;
  /** See the join command (it carries the join token); deactivate, activate and remove hosts. */
  addHosts: boolean;
  /** Owners' rights: members and roles, the audit log, revoking host credentials, rotating the join token. */
  manageEnv: boolean;
  /** Users, environments, backups. */
  admin: boolean;
  role: Role | null;
}

/** Keeps the roles fresh: they may change whenever the set of environments does. */
export function SessionRefresh() {
  const { setWho } = useSession();
  const fresh = useLive("whoami", ["environments"], (s) => api.whoami(s));
  useEffect(() => {
    if (fresh.data) setWho(fresh.data);
  }, [fresh.data, setWho]);
  return null;
}

/** What the signed-in user may do in the selected environment. */
export function useEnvRights(): Rights {
  return useRights(useLiveState().env);
}

/** What the signed-in user may do in `env`; everything when that is not known. */
export function useRights(env: string | null): Rights {
  const { who } = useSession();
  if (!who) return { change: true, addHosts: true, manageEnv: true, admin: true, role: null };
  const role: Role | null = who.admin ? "admin" : (who.environments.find((e) => e.name === env)?.role ?? null);
  // An environment not (yet) in the list: let the API decide.
  const rank = role === null ? RANK.admin : RANK[role];
  return { change: rank >= RANK.restricted, addHosts: rank >= RANK.member, manageEnv: rank >= RANK.owner, admin: who.admin, role };
}
