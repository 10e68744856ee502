import { ActionIcon, AppShell, Badge, Burger, Button, Group, MantineProvider, Menu, NavLink, Select, Text, Title, Tooltip, createTheme } from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import { Notifications } from "@mantine/notifications";
import { useEffect, type ReactNode } from "react";
import { HashRouter, Link, Navigate, Route, Routes, useLocation, useNavigate } from "react-router";
import { api, inDesktop, selectEnv, selectedEnv } from "./api.ts";
import { useEnvironmentFallback } from "./envFallback.ts";
import { LiveProvider, useLive, useLiveState } from "./live.tsx";
import { AuditPage } from "./pages/AuditPage.tsx";
import { ContainerPage } from "./pages/ContainerPage.tsx";
import { DashboardPage } from "./pages/DashboardPage.tsx";
import { EnvironmentsPage } from "./pages/EnvironmentsPage.tsx";
import { SettingsPage } from "./pages/SettingsPage.tsx";
import { HostPage, ServicePage } from "./pages/StatsPages.tsx";
import { HostsPage } from "./pages/HostsPage.tsx";
import { MembersPage } from "./pages/MembersPage.tsx";
import { RegistriesPage } from "./pages/RegistriesPage.tsx";
import { GroupsPage, UsersPage } from "./pages/UsersPage.tsx";
import { StackPage } from "./pages/StackPage.tsx";
import { StacksPage } from "./pages/StacksPage.tsx";
import { SessionGate, SessionRefresh, useEnvRights, useSession, type Rights } from "./session.tsx";

const theme = createTheme({ primaryColor: "teal", defaultRadius: "md" });

export function App() {
  return (
    <MantineProvider theme={theme} defaultColorScheme="auto">
      <Notifications position="bottom-right" />
      <HashRouter>
        <SessionGate>
          <LiveProvider>
            <Shell />
          </LiveProvider>
        </SessionGate>
      </HashRouter>
    </MantineProvider>
  );
}

/** A page in the side navigation, and who it is for (the API refuses the others anyway). */
interface NavItem {
  path: string;
  label: string;
  element: ReactNode;
  testId: string;
  shown?: (rights: Rights) => boolean;
}

const NAV: NavItem[] = [
  { path: "/dashboard", label: "Dashboard", element: <DashboardPage />, testId: "nav-dashboard" },
  { path: "/hosts", label: "Hosts", element: <HostsPage />, testId: "nav-hosts" },
  { path: "/stacks", label: "Stacks", element: <StacksPage />, testId: "nav-stacks" },
  { path: "/registries", label: "Registries", element: <RegistriesPage />, testId: "nav-registries" },
  { path: "/members", label: "Members", element: <MembersPage />, testId: "nav-members", shown: (r) => r.manageEnv },
  { path: "/audit", label: "Audit log", element: <AuditPage />, testId: "nav-audit", shown: (r) => r.manageEnv },
  { path: "/users", label: "Users", element: <UsersPage />, testId: "nav-users", shown: (r) => r.admin },
  { path: "/groups", label: "Groups", element: <GroupsPage />, testId: "nav-groups", shown: (r) => r.admin },
  { path: "/environments", label: "Environments", element: <EnvironmentsPage />, testId: "nav-environments" },
  { path: "/settings", label: "Settings", element: <SettingsPage />, testId: "nav-settings-side" },
];

function Shell() {
  const location = useLocation();
  const rights = useEnvRights();
  // Below the `sm` breakpoint the navigation is a drawer behind a burger; choosing a page closes it.
  const [navOpened, nav] = useDisclosure(false);
  const closeNav = nav.close;
  useEffect(() => closeNav(), [location.pathname, closeNav]);
  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 180, breakpoint: "sm", collapsed: { mobile: !navOpened } }} padding="md">
      <AppShell.Header>
        <SessionRefresh />
        <TopBar navOpened={navOpened} onBurger={nav.toggle} />
      </AppShell.Header>
      <AppShell.Navbar p="xs" data-testid="navbar" data-opened={navOpened}>
        {/* Real links: Tab reaches them, and a middle click opens the page in a new tab. */}
        {NAV.filter((item) => item.shown?.(rights) ?? true).map((item) => (
          <NavLink key={item.path} component={Link} to={item.path} label={item.label} data-testid={item.testId} active={location.pathname.startsWith(item.path)} />
        ))}
      </AppShell.Navbar>
      <AppShell.Main>
        <Routes>
          <Route path="/" element={<Navigate to="/hosts" replace />} />
          {/* Every page is routed, also the ones not in this user's navigation: a link to one
              shows the API's refusal rather than a blank page. */}
          {NAV.map((item) => (
            <Route key={item.path} path={item.path} element={item.element} />
          ))}
          <Route path="/hosts/:name" element={<HostPage />} />
          <Route path="/stacks/:stack/services/:service" element={<ServicePage />} />
          <Route path="/stacks/:stack" element={<StackPage />} />
          <Route path="/stacks/:stack/:tab" element={<StackPage />} />
          <Route path="/containers/:name" element={<ContainerPage />} />
          <Route path="*" element={<Navigate to="/hosts" replace />} />
        </Routes>
      </AppShell.Main>
    </AppShell>
  );
}

function TopBar({ navOpened, onBurger }: { navOpened: boolean; onBurger: () => void }) {
  return (
    <Group h="100%" px={{ base: "xs", sm: "md" }} justify="space-between" wrap="nowrap" gap="xs">
      <Group gap="sm" wrap="nowrap">
        <Burger opened={navOpened} onClick={onBurger} hiddenFrom="sm" size="sm" aria-label={navOpened ? "Close the navigation" : "Open the navigation"} data-testid="nav-burger" />
        <Title order={3} c="teal" visibleFrom="xs">
          Corral
        </Title>
        <Text size="sm" c="dimmed" visibleFrom="sm">
          Docker hosts, stacks and services
        </Text>
      </Group>
      <Group gap="md" wrap="nowrap">
        <EnvironmentSwitcher />
        <LinkBadge />
        <SettingsLink />
        <UserMenu />
      </Group>
    </Group>
  );
}

function SettingsLink() {
  return (
    <Tooltip label="Settings">
      <ActionIcon component={Link} to="/settings" variant="subtle" size="lg" aria-label="Settings" data-testid="nav-settings" visibleFrom="xs">
        <span style={{ fontSize: 20, lineHeight: 1 }}>⚙</span>
      </ActionIcon>
    </Tooltip>
  );
}

/** Who is signed in, and signing out (the desktop app signs itself in, so it has no sign-out). */
function UserMenu() {
  const { who, signOut } = useSession();
  if (!who) return null;
  return (
    <Menu position="bottom-end" withinPortal>
      <Menu.Target>
        <Button variant="default" size="sm" maw={{ base: 96, sm: 240 }} data-testid="user-menu" data-user={who.user}>
          {who.user}
        </Button>
      </Menu.Target>
      <Menu.Dropdown>
        <Menu.Label>{who.admin ? "Administrator" : "Signed in"}{who.key ? ` with key ${who.key}` : ""}</Menu.Label>
        <Menu.Item component={Link} to="/settings">
          Settings
        </Menu.Item>
        <Menu.Item component={Link} to="/environments">
          Environments
        </Menu.Item>
        {!inDesktop && (
          <Menu.Item color="red" onClick={() => void signOut()} data-testid="sign-out">
            Sign out
          </Menu.Item>
        )}
      </Menu.Dropdown>
    </Menu>
  );
}

function LinkBadge() {
  const { state } = useLiveState();
  const look = {
    live: { color: "green", label: "live", tip: "Changes appear as they happen" },
    connecting: { color: "gray", label: "connecting", tip: "Opening the event stream" },
    reconnecting: {
      color: "orange",
      label: "reconnecting",
      tip: "The event stream is down; what is shown may be out of date until it reconnects",
    },
  }[state];
  return (
    <Tooltip label={look.tip}>
      <Badge color={look.color} variant="dot" data-testid="link-state" data-state={state}>
        {look.label}
      </Badge>
    </Tooltip>
  );
}

function EnvironmentSwitcher() {
  const envs = useLive("environments", ["environments"], (s) => api.environments(s));
  const { env } = useLiveState();
  const location = useLocation();
  const navigate = useNavigate();
  const names = (envs.data ?? []).map((e) => e.name);

  const switchTo = (name: string) => {
    if (name === selectedEnv()) return;
    selectEnv(name);
    // A stack or container belongs to one environment: leave its page. The top-level pages
    // (hosts, members, audit, …) show the new environment's own.
    const itemPage = location.pathname.split("/").filter(Boolean).length > 1;
    if (itemPage && !location.pathname.startsWith("/hosts")) navigate("/stacks");
  };

  // The desktop's Environment menu switches exactly as this switcher does.
  useEffect(() => {
    const onSelect = (e: Event) => {
      const name = (e as CustomEvent<unknown>).detail;
      if (typeof name === "string" && name) switchTo(name);
    };
    window.addEventListener("corral:select-env", onSelect);
    return () => window.removeEventListener("corral:select-env", onSelect);
  });

  // An environment that is gone (removed elsewhere, or not in a restored database) falls back
  // to one that exists, and the user is told.
  useEnvironmentFallback(envs.data, env, switchTo);

  useEffect(() => {
    document.title = env ? `Corral — ${env}` : "Corral";
  }, [env]);

  return (
    <Select
      aria-label="Environment"
      data-testid="env-switcher"
      w={{ base: 130, sm: 200 }}
      size="sm"
      allowDeselect={false}
      placeholder={envs.error ? "environments unavailable" : "Environment"}
      data={names}
      value={env && names.includes(env) ? env : null}
      onChange={(v) => v && switchTo(v)}
      comboboxProps={{ withinPortal: true }}
    />
  );
}
