import { Anchor, Badge, Button, Card, Code, CopyButton, Group, Modal, Stack, Text, Title, Tooltip } from "@mantine/core";
import { useVirtualizer } from "@tanstack/react-virtual";
import { memo, useMemo, useRef, useState } from "react";
import { Link } from "react-router";
import { api, type Container, type Host } from "../api.ts";
import { EmptyState, ErrorBanner, ListSkeleton } from "../components/common.tsx";
import { formatBytes, formatSince, stateColor } from "../format.ts";
import { useLive } from "../live.tsx";
import { useEnvRights } from "../session.tsx";

export function HostsPage() {
  const hosts = useLive("hosts", ["hosts"], (s) => api.hosts(s));
  const containers = useLive("containers", ["containers"], (s) => api.containers({}, s));
  const [adding, setAdding] = useState(false);
  // The join command carries the join token: only roles that may add hosts get to see it.
  const { addHosts } = useEnvRights();

  const byHost = useMemo(() => {
    const m = new Map<string, Container[]>();
    for (const c of containers.data ?? []) {
      const list = m.get(c.host);
      if (list) list.push(c);
      else m.set(c.host, [c]);
    }
    return m;
  }, [containers.data]);

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
      {hosts.data && hosts.data.length > 0 && <HostList hosts={hosts.data} byHost={byHost} />}
      <AddHostDialog opened={adding} onClose={() => setAdding(false)} />
    </Stack>
  );
}

function HostList({ hosts, byHost }: { hosts: Host[]; byHost: Map<string, Container[]> }) {
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
              <HostCard host={host} containers={byHost.get(host.name) ?? []} />
            </div>
          );
        })}
      </div>
    </div>
  );
}

const SHOWN_CONTAINERS = 24;

// Memoised: scrolling re-renders the list, and cards already on screen have not changed.
const HostCard = memo(function HostCard({ host, containers }: { host: Host; containers: Container[] }) {
  const labels = Object.entries(host.labels ?? {});
  return (
    <Card withBorder radius="md" padding="md" data-testid="host-card" data-host={host.name}>
      <Group justify="space-between" mb="xs" wrap="nowrap">
        <Group gap="sm" wrap="nowrap">
          <Title order={4}>
            <Anchor component={Link} to={`/hosts/${encodeURIComponent(host.name)}`} inherit data-testid="host-link">
              {host.name}
            </Anchor>
          </Title>
          <Badge color={stateColor(host.state)} variant="light" data-testid="host-state">
            {host.state}
          </Badge>
          {host.in_sync === false && host.state === "active" && (
            <Tooltip label="The agent has not yet applied the latest desired containers">
              <Badge color="yellow" variant="outline">
                syncing
              </Badge>
            </Tooltip>
          )}
        </Group>
        <Text size="sm" c="dimmed">
          {host.containers} container{host.containers === 1 ? "" : "s"}
        </Text>
      </Group>
      {host.state !== "active" && (
        <Text size="sm" c="red" mb="xs" data-testid="host-reason">
          {host.state} since {formatSince(host.state_since)}
          {host.state === "disconnected" && " — its agent is not connected; containers keep running on the engine"}
        </Text>
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

function AddHostDialog({ opened, onClose }: { opened: boolean; onClose: () => void }) {
  return (
    <Modal opened={opened} onClose={onClose} title="Add a host" size="xl" data-testid="add-host-dialog">
      {opened && <JoinCommand />}
    </Modal>
  );
}

function JoinCommand() {
  const join = useLive("join-command", ["environments"], (s) => api.joinCommand(s));
  if (join.error) return <ErrorBanner error={join.error} what="the join command" onRetry={join.reload} />;
  if (!join.data) return <ListSkeleton rows={1} height={60} />;
  return (
    <Stack gap="sm">
      <Text size="sm">
        Run this on a machine with Docker to add it to the <b>{join.data.environment}</b> environment. It downloads the
        agent from this control plane and connects it; the host appears on this page within seconds.
      </Text>
      <Code block data-testid="join-command" style={{ whiteSpace: "pre-wrap", wordBreak: "break-all" }}>
        {join.data.command}
      </Code>
      <Group justify="flex-end">
        <CopyButton value={join.data.command}>
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
    </Stack>
  );
}
