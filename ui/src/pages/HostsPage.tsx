import { Alert, Anchor, Badge, Button, Card, Code, CopyButton, Group, Menu, Modal, Stack, Text, Title, Tooltip } from "@mantine/core";
import { useVirtualizer } from "@tanstack/react-virtual";
import { memo, useCallback, useMemo, useRef, useState } from "react";
import { Link } from "react-router";
import { api, type Container, type Host, type JoinCommand as Join } from "../api.ts";
import { ConfirmDialog, EmptyState, ErrorBanner, ListSkeleton, notifyDone, notifyError } from "../components/common.tsx";
import { Ago } from "../clock.tsx";
import { formatBytes, stateColor } from "../format.ts";
import { FilterInput, NoMatch, useFilter } from "../components/Filter.tsx";
import { useLive, useLiveState } from "../live.tsx";
import { useEnvRights } from "../session.tsx";

type HostAction = "deactivate" | "activate" | "remove" | "revoke";

/** What the card offers: hosts are managed by owners and members; credentials are owners'. */
interface HostRights {
  manage: boolean;
  revoke: boolean;
}

type OnHostAction = (host: Host, action: HostAction) => void;

/** What the hosts filter looks in. */
const hostText = (h: Host) =>
  [h.name, h.address, h.state, h.status, h.deactivated && "deactivated", h.os, h.docker_version, ...Object.entries(h.labels ?? {}).map(([k, v]) => `${k}=${v}`)].filter(Boolean).join(" ");

/** A host that gets no new containers, or whose agent is gone, may be removed. */
const removable = (h: Host) => h.deactivated === true || h.state === "disconnected";

export function HostsPage() {
  const hosts = useLive("hosts", ["hosts"], (s) => api.hosts(s));
  const containers = useLive("containers", ["containers"], (s) => api.containers({}, s));
  const [adding, setAdding] = useState(false);
  const [confirming, setConfirming] = useState<{ host: Host; action: "remove" | "revoke" } | null>(null);
  // The join command carries the join token: only roles that may add hosts get to see it.
  const { addHosts, manageEnv } = useEnvRights();
  const rights = useMemo(() => ({ manage: addHosts, revoke: manageEnv }), [addHosts, manageEnv]);

  const byHost = useMemo(() => {
    const m = new Map<string, Container[]>();
    for (const c of containers.data ?? []) {
      const list = m.get(c.host);
      if (list) list.push(c);
      else m.set(c.host, [c]);
    }
    return m;
  }, [containers.data]);

  // Stable, so the memoised cards do not re-render for it.
  const onAction = useCallback<OnHostAction>((host, action) => {
    if (action === "remove" || action === "revoke") {
      setConfirming({ host, action });
      return;
    }
    const call = action === "deactivate" ? api.deactivateHost : api.activateHost;
    call(host.name).then(
      () => notifyDone(`${host.name} ${action === "deactivate" ? "deactivated: it gets no new containers" : "active again: it gets new containers"}`),
      (e: unknown) => notifyError(`Could not ${action} ${host.name}`, e),
    );
  }, []);

  const filter = useFilter(hosts.data, hostText);
  const pending = confirming?.host.name ?? "";
  return (
    <Stack gap="md" h="calc(100vh - 56px - 2 * var(--mantine-spacing-md))">
      <Group justify="space-between">
        <Title order={2}>
          Hosts {hosts.data && <Text span c="dimmed" size="lg">({hosts.data.length})</Text>}
        </Title>
        {addHosts && (
          <Button onClick={() => setAdding(true)} data-testid="add-host">
            Add Host
          </Button>
        )}
      </Group>
      {hosts.error && <ErrorBanner error={hosts.error} what="hosts" onRetry={hosts.reload} />}
      {containers.error && !hosts.error && <ErrorBanner error={containers.error} what="containers" onRetry={containers.reload} />}
      {hosts.loading && <ListSkeleton rows={3} height={140} />}
      {hosts.data && hosts.data.length === 0 && (
        <EmptyState
          title="No hosts yet"
          testId="hosts-empty"
          action={addHosts && <Button onClick={() => setAdding(true)}>Add Host</Button>}
        >
          Add a Docker host: run the join command on it and it appears here within seconds.
        </EmptyState>
      )}
      {hosts.data && hosts.data.length > 0 && (
        <FilterInput value={filter.query} onChange={filter.setQuery} placeholder="Filter hosts by name, address, state, label…" testId="hosts-filter" count={filter.shown.length} total={hosts.data.length} />
      )}
      {hosts.data && hosts.data.length > 0 && filter.shown.length === 0 && <NoMatch query={filter.query} />}
      {filter.shown.length > 0 && <HostList hosts={filter.shown} byHost={byHost} rights={rights} onAction={onAction} />}
      <AddHostDialog opened={adding} onClose={() => setAdding(false)} canRotate={manageEnv} />
      <ConfirmDialog
        title={confirming?.action === "revoke" ? `Revoke the credential of ${pending}?` : `Remove host ${pending}?`}
        confirm={confirming?.action === "revoke" ? "Revoke" : "Remove"}
        opened={confirming !== null}
        onClose={() => setConfirming(null)}
        failure={`Could not ${confirming?.action ?? "change"} ${pending}`}
        testId="confirm-host-action"
        action={async () => {
          if (!confirming) return;
          if (confirming.action === "revoke") {
            await api.revokeHost(pending);
            notifyDone(`The credential of ${pending} is revoked`);
          } else {
            await api.removeHost(pending);
            notifyDone(`Host ${pending} removed`);
          }
        }}
      >
        {confirming?.action === "revoke"
          ? "Its agent is disconnected and refused from now on; to come back it must join again with the join token. Its containers keep running on the engine."
          : "Its agent is refused from now on and the host leaves this list. Containers placed on it are started on other hosts; the engine itself is not touched."}
      </ConfirmDialog>
    </Stack>
  );
}

function HostList({ hosts, byHost, rights, onAction }: { hosts: Host[]; byHost: Map<string, Container[]>; rights: HostRights; onAction: OnHostAction }) {
  const parent = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({
    count: hosts.length,
    getScrollElement: () => parent.current,
    estimateSize: () => 190,
    overscan: 4,
    getItemKey: (i) => hosts[i]!.name,
  });
  return (
    <div ref={parent} style={{ flex: 1, minHeight: 0, overflow: "auto" }} data-testid="hosts-scroll">
      <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
        {virtual.getVirtualItems().map((item) => {
          const host = hosts[item.index]!;
          return (
            <div
              key={item.key}
              data-index={item.index}
              ref={virtual.measureElement}
              style={{ position: "absolute", top: 0, left: 0, right: 0, transform: `translateY(${item.start}px)`, paddingBottom: 12 }}
            >
              <HostCard host={host} containers={byHost.get(host.name) ?? []} rights={rights} onAction={onAction} />
            </div>
          );
        })}
      </div>
    </div>
  );
}

const SHOWN_CONTAINERS = 24;

// Memoised: scrolling re-renders the list, and cards already on screen have not changed.
const HostCard = memo(function HostCard({ host, containers, rights, onAction }: { host: Host; containers: Container[]; rights: HostRights; onAction: OnHostAction }) {
  const labels = Object.entries(host.labels ?? {});
  return (
    <Card withBorder radius="md" padding="md" data-testid="host-card" data-host={host.name}>
      <Group justify="space-between" mb="xs" wrap="nowrap" align="flex-start">
        <Group gap="sm" style={{ minWidth: 0 }}>
          <Title order={4}>
            <Anchor component={Link} to={`/hosts/${encodeURIComponent(host.name)}`} inherit data-testid="host-link">
              {host.name}
            </Anchor>
          </Title>
          <Badge color={stateColor(host.state)} variant="light" data-testid="host-state">
            {host.state}
          </Badge>
          {host.deactivated && (
            <Tooltip label="Gets no new containers; those running there keep running and are healed in place">
              <Badge color="orange" variant="filled" data-testid="host-deactivated">
                deactivated
              </Badge>
            </Tooltip>
          )}
          {host.revoked_at && (
            <Badge color="red" variant="outline" data-testid="host-revoked">
              credential revoked
            </Badge>
          )}
          {host.in_sync === false && host.state === "active" && (
            <Tooltip label="The agent has not yet applied the latest desired containers">
              <Badge color="yellow" variant="outline">
                syncing
              </Badge>
            </Tooltip>
          )}
        </Group>
        <Group gap="sm" wrap="nowrap">
          <Text size="sm" c="dimmed">
            {host.containers} container{host.containers === 1 ? "" : "s"}
          </Text>
          {(rights.manage || rights.revoke) && <HostMenu host={host} rights={rights} onAction={onAction} />}
        </Group>
      </Group>
      {host.state !== "active" && (
        <Text size="sm" c="red" mb="xs" data-testid="host-reason">
          {host.state} since <Ago iso={host.state_since} />
          {host.state === "disconnected" && " — its agent is not connected; containers keep running on the engine"}
        </Text>
      )}
      {host.problem && (
        <Alert color="orange" variant="light" mb="xs" p="xs" title="Problem on this host" data-testid="host-problem">
          <Text size="sm" style={{ whiteSpace: "pre-wrap", wordBreak: "break-word" }}>
            {host.problem}
          </Text>
        </Alert>
      )}
      {/* A CSS grid rather than SimpleGrid, whose responsive columns add a style tag per card. */}
      <div className="facts">
        <Fact label="Address" value={host.address} />
        <Fact label="Docker" value={host.docker_version} />
        <Fact label="CPUs / memory" value={`${host.cpus} / ${formatBytes(host.memory_bytes)}`} />
        <Fact label="OS" value={host.os ?? "—"} />
        <Fact label="Kernel" value={host.kernel ?? "—"} />
      </div>
      {labels.length > 0 && (
        <Group gap={4} mb="xs">
          {labels.map(([k, v]) => (
            <Badge key={k} variant="outline" color="gray" tt="none">
              {k}={v}
            </Badge>
          ))}
        </Group>
      )}
      {containers.length > 0 && (
        <Group gap={4}>
          {/* Plain links, not Badge components: a thousand cards scroll past, each with dozens. */}
          {containers.slice(0, SHOWN_CONTAINERS).map((c) => (
            <Link key={c.name} to={`/containers/${encodeURIComponent(c.name)}`} className={`chip chip-${stateColor(c.state)}`} title={`${c.state} ${c.status}`}>
              {c.name}
            </Link>
          ))}
          {containers.length > SHOWN_CONTAINERS && (
            <Text size="xs" c="dimmed">
              and {containers.length - SHOWN_CONTAINERS} more
            </Text>
          )}
        </Group>
      )}
    </Card>
  );
});

function HostMenu({ host, rights, onAction }: { host: Host; rights: HostRights; onAction: OnHostAction }) {
  return (
    <Menu position="bottom-end" withinPortal>
      <Menu.Target>
        <Button size="xs" variant="default" data-testid="host-actions">
          Actions
        </Button>
      </Menu.Target>
      <Menu.Dropdown>
        {rights.manage &&
          (host.deactivated ? (
            <Menu.Item onClick={() => onAction(host, "activate")} data-testid="host-activate">
              Activate
            </Menu.Item>
          ) : (
            <Menu.Item onClick={() => onAction(host, "deactivate")} data-testid="host-deactivate">
              Deactivate (no new containers)
            </Menu.Item>
          ))}
        {rights.manage && removable(host) && (
          <Menu.Item color="red" onClick={() => onAction(host, "remove")} data-testid="host-remove">
            Remove…
          </Menu.Item>
        )}
        {rights.manage && !removable(host) && <Menu.Label>Deactivate it to remove it</Menu.Label>}
        {rights.revoke && !host.revoked_at && (
          <Menu.Item color="red" onClick={() => onAction(host, "revoke")} data-testid="host-revoke">
            Revoke credential…
          </Menu.Item>
        )}
      </Menu.Dropdown>
    </Menu>
  );
}

function Fact({ label, value }: { label: string; value: string }) {
  return (
    <div>
      <Text size="xs" c="dimmed">
        {label}
      </Text>
      <Text size="sm" truncate title={value}>
        {value || "—"}
      </Text>
    </div>
  );
}

function AddHostDialog({ opened, onClose, canRotate }: { opened: boolean; onClose: () => void; canRotate: boolean }) {
  const { env } = useLiveState();
  return (
    <Modal opened={opened} onClose={onClose} title="Add a host" size="xl" data-testid="add-host-dialog">
      {/* Keyed by environment: a rotated command shown belongs to the environment it was made for. */}
      {opened && <JoinCommand key={env ?? ""} canRotate={canRotate} />}
    </Modal>
  );
}

function JoinCommand({ canRotate }: { canRotate: boolean }) {
  const join = useLive("join-command", ["environments"], (s) => api.joinCommand(s));
  // The answer of a rotation, shown until the stream brings a fresh command anyway.
  const [rotated, setRotated] = useState<Join | null>(null);
  const [confirming, setConfirming] = useState(false);
  if (join.error) return <ErrorBanner error={join.error} what="the join command" onRetry={join.reload} />;
  const cmd = rotated ?? join.data;
  if (!cmd) return <ListSkeleton rows={1} height={60} />;
  return (
    <Stack gap="sm">
      <Text size="sm">
        Run this on a machine with Docker to add it to the <b>{cmd.environment}</b> environment. It downloads the
        agent from this control plane and connects it; the host appears on this page within seconds.
      </Text>
      <Code block data-testid="join-command" style={{ whiteSpace: "pre-wrap", wordBreak: "break-all" }}>
        {cmd.command}
      </Code>
      {cmd.ca_fingerprint && (
        <Text size="sm">
          The agent trusts the control plane by its CA fingerprint: <Code data-testid="ca-fingerprint">{cmd.ca_fingerprint}</Code>
        </Text>
      )}
      {rotated && (
        <Alert color="teal" data-testid="token-rotated">
          A new join token: the old one is refused from now on. Hosts that already joined keep their own credentials.
        </Alert>
      )}
      <Group justify="space-between">
        {canRotate ? (
          <Button variant="light" color="orange" onClick={() => setConfirming(true)} data-testid="rotate-token">
            Rotate token
          </Button>
        ) : (
          <span />
        )}
        <CopyButton value={cmd.command}>
          {({ copied, copy }) => (
            <Button color={copied ? "teal" : undefined} onClick={copy} data-testid="copy-join">
              {copied ? "Copied" : "Copy command"}
            </Button>
          )}
        </CopyButton>
      </Group>
      <Text size="xs" c="dimmed">
        Add <Code>--label KEY=VALUE</Code> to label the host for placement constraints, e.g. <Code>--label zone=eu</Code>.
      </Text>
      <ConfirmDialog
        title={`Rotate the join token of ${cmd.environment}?`}
        confirm="Rotate"
        opened={confirming}
        onClose={() => setConfirming(false)}
        failure="Could not rotate the join token"
        testId="confirm-rotate-token"
        action={async () => setRotated(await api.rotateJoinToken())}
      >
        Join commands given out so far stop working. Hosts that already joined are not affected.
      </ConfirmDialog>
    </Stack>
  );
}
