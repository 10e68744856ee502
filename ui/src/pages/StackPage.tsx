import { Anchor, Badge, Breadcrumbs, Button, Card, Group, Modal, Stack, Table, Tabs, Text, Title } from "@mantine/core";
import { useVirtualizer } from "@tanstack/react-virtual";
import { lazy, memo, Suspense, useMemo, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api, type Container, type Service } from "../api.ts";
import { EmptyState, ErrorBanner, ListSkeleton, notifyDone, notifyError } from "../components/common.tsx";
import { FilterInput, NoMatch, useFilter } from "../components/Filter.tsx";
import { ScaleControl } from "../components/ScaleControl.tsx";
import { formatPort, stateColor } from "../format.ts";
import { HEALTH_COLOR, serviceHealth } from "../health.ts";
import { ContainerStateCell, ServicePulls, ServiceReason, ServiceStatusBadge, serviceStatus } from "../components/Status.tsx";
import { useLive } from "../live.tsx";
import { useEnvRights } from "../session.tsx";
import { LoadBalancerFormModal, ServiceFormModal } from "./ServiceForms.tsx";
import { ServiceUpgradeModal } from "../components/ServiceUpgrade.tsx";

// The graph pulls in the layout engine (large): load it only when the tab is opened.
const StackGraph = lazy(() => import("./StackGraph.tsx"));

type Tab = "services" | "containers" | "graph";

export function StackPage() {
  const { stack = "", tab = "services" } = useParams();
  const navigate = useNavigate();
  const services = useLive(`services/${stack}`, ["services", "containers"], (s) => api.services(stack, s));
  const containers = useLive(`containers/${stack}`, ["containers"], (s) => api.containers({ stack }, s));
  const [dialog, setDialog] = useState<"service" | "lb" | "remove-stack" | null>(null);
  const { change } = useEnvRights();

  const targets = (services.data ?? []).filter((s) => s.kind !== "load-balancer").map((s) => `${s.stack}/${s.name}`);
  const go = (t: string | null) => navigate(`/stacks/${encodeURIComponent(stack)}${t && t !== "services" ? `/${t}` : ""}`);

  const removeStack = async () => {
    try {
      await api.removeStack(stack);
      notifyDone(`Removed stack ${stack}`);
      navigate("/stacks");
    } catch (e) {
      notifyError(`Could not remove stack ${stack}`, e);
    }
  };

  return (
    <Stack gap="md">
      <Breadcrumbs>
        <Anchor component={Link} to="/stacks">
          Stacks
        </Anchor>
        <Text>{stack}</Text>
      </Breadcrumbs>
      <Group justify="space-between">
        <Title order={2} data-testid="stack-title">
          {stack}
        </Title>
        <Group display={change ? undefined : "none"}>
          <Button onClick={() => setDialog("service")} data-testid="add-service">
            Add service
          </Button>
          <Button variant="light" onClick={() => setDialog("lb")} data-testid="add-lb">
            Add load balancer
          </Button>
          <Button variant="subtle" color="red" onClick={() => setDialog("remove-stack")}>
            Remove stack
          </Button>
        </Group>
      </Group>
      {services.error && <ErrorBanner error={services.error} what="services" onRetry={services.reload} />}
      <Tabs value={tab as Tab} onChange={go} keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="services" data-testid="tab-services">
            Services {services.data && `(${services.data.length})`}
          </Tabs.Tab>
          <Tabs.Tab value="containers" data-testid="tab-containers">
            Containers {containers.data && `(${containers.data.length})`}
          </Tabs.Tab>
          <Tabs.Tab value="graph" data-testid="tab-graph">
            Graph
          </Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="services" pt="md">
          {services.loading && <ListSkeleton rows={3} height={48} />}
          {services.data && services.data.length === 0 && (
            <EmptyState title="No services in this stack yet" testId="services-empty" action={change && <Button onClick={() => setDialog("service")}>Add service</Button>}>
              A service runs an image at a scale you choose, spread over the hosts. Add one, then put a load balancer in front of it.
            </EmptyState>
          )}
          {services.data && services.data.length > 0 && <ServiceTable services={services.data} />}
        </Tabs.Panel>
        <Tabs.Panel value="containers" pt="md">
          {containers.error && <ErrorBanner error={containers.error} what="containers" onRetry={containers.reload} />}
          {containers.loading && <ListSkeleton rows={5} height={32} />}
          {containers.data && containers.data.length === 0 && (
            <EmptyState title="No containers" testId="containers-empty">
              Containers appear here as soon as a service with a scale above 0 is placed on a host.
            </EmptyState>
          )}
          {containers.data && containers.data.length > 0 && <ContainerTable containers={containers.data} />}
        </Tabs.Panel>
        <Tabs.Panel value="graph" pt="md">
          {services.data && (
            <Suspense fallback={<ListSkeleton rows={1} height={400} />}>
              <StackGraph services={services.data} />
            </Suspense>
          )}
        </Tabs.Panel>
      </Tabs>
      <ServiceFormModal stack={stack} opened={dialog === "service"} onClose={() => setDialog(null)} />
      <LoadBalancerFormModal stack={stack} targets={targets} opened={dialog === "lb"} onClose={() => setDialog(null)} />
      <Confirm
        opened={dialog === "remove-stack"}
        onClose={() => setDialog(null)}
        title={`Remove stack ${stack}?`}
        action="Remove stack"
        onConfirm={removeStack}
      >
        Its services and all their containers are removed from the hosts.
      </Confirm>
    </Stack>
  );
}

function Confirm({ opened, onClose, title, action, onConfirm, children }: { opened: boolean; onClose: () => void; title: string; action: string; onConfirm: () => Promise<void>; children: React.ReactNode }) {
  const [busy, setBusy] = useState(false);
  return (
    <Modal opened={opened} onClose={onClose} title={title} data-testid="confirm-dialog">
      <Text size="sm" mb="md">
        {children}
      </Text>
      <Group justify="flex-end">
        <Button variant="default" onClick={onClose}>
          Cancel
        </Button>
        <Button
          color="red"
          loading={busy}
          data-testid="confirm"
          onClick={async () => {
            setBusy(true);
            await onConfirm();
            setBusy(false);
            onClose();
          }}
        >
          {action}
        </Button>
      </Group>
    </Modal>
  );
}

function ServiceTable({ services }: { services: Service[] }) {
  const filter = useFilter(services, (s) => [s.name, s.image, s.kind, s.state, ...s.unplaced].join(" "));
  const sorted = filter.shown.sort((a, b) => a.name.localeCompare(b.name));
  return (
    <Stack gap="sm">
      <FilterInput value={filter.query} onChange={filter.setQuery} placeholder="Filter services by name or image" testId="services-filter" count={sorted.length} total={services.length} />
      {sorted.length === 0 ? <NoMatch query={filter.query} /> : <ServiceRows services={sorted} />}
    </Stack>
  );
}

function ServiceRows({ services }: { services: Service[] }) {
  return (
    <Card withBorder padding={0}>
      {/* Narrow screens scroll the table sideways rather than squeeze its controls. */}
      <Table.ScrollContainer minWidth={760} type="native">
      <Table verticalSpacing="sm" data-testid="services-table">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Service</Table.Th>
            <Table.Th>Image / balances</Table.Th>
            <Table.Th w={140}>Running</Table.Th>
            <Table.Th w={140}>Scale</Table.Th>
            <Table.Th w={110}>State</Table.Th>
            <Table.Th />
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {services.map((s) => (
            <ServiceRow key={s.name} service={s} />
          ))}
        </Table.Tbody>
      </Table>
      </Table.ScrollContainer>
    </Card>
  );
}

function ServiceRow({ service: s }: { service: Service }) {
  const [confirming, setConfirming] = useState(false);
  const [editing, setEditing] = useState(false);
  const [busy, setBusy] = useState(false);
  // A role that may only look sees the controls greyed out rather than refused after a click.
  const readOnly = !useEnvRights().change;
  const health = serviceHealth(s);
  const stopped = s.state === "stopped";
  const act = async (what: string, f: () => Promise<unknown>) => {
    setBusy(true);
    try {
      await f();
    } catch (e) {
      notifyError(`Could not ${what} ${s.stack}/${s.name}`, e);
    } finally {
      setBusy(false);
    }
  };
  const lb = s.lb;
  return (
    <Table.Tr data-testid="service-row" data-service={s.name} data-status={serviceStatus(s)}>
      <Table.Td>
        <Group gap={6} wrap="nowrap">
          <Anchor component={Link} to={`/stacks/${encodeURIComponent(s.stack)}/services/${encodeURIComponent(s.name)}`} fw={600} data-testid="service-link">
            {s.name}
          </Anchor>
          {s.kind === "load-balancer" && (
            <Badge size="xs" variant="outline">
              LB
            </Badge>
          )}
        </Group>
      </Table.Td>
      <Table.Td>
        {lb ? (
          <Text size="sm">
            {lb.ports.map((p) => `${p.listen}→${p.target}${p.mode === "tcp" ? "/tcp" : ""}`).join(", ")} → {[...lb.targets, ...lb.rules.map((r) => `${r.service}:${r.port}`)].join(", ") || "no targets"}
          </Text>
        ) : (
          <Text size="sm" ff="monospace">
            {s.image}
          </Text>
        )}
        {s.unplaced.length > 0 && !s.reason && (
          <Text size="xs" c="orange" data-testid="unplaced">
            {s.unplaced.join("; ")}
          </Text>
        )}
        <ServiceReason s={s} />
      </Table.Td>
      <Table.Td>
        <Badge color={HEALTH_COLOR[health]} variant="light" tt="none" style={{ overflow: "visible" }} data-testid="service-running">
          {s.running}/{s.scale} running
        </Badge>
        <Text size="xs" c="dimmed">
          {s.placed} placed
        </Text>
        <ServicePulls s={s} />
      </Table.Td>
      <Table.Td>
        <ScaleControl stack={s.stack} service={s.name} scale={s.scale} disabled={readOnly} />
      </Table.Td>
      <Table.Td>
        <ServiceStatusBadge s={s} />
      </Table.Td>
      <Table.Td>
        <Group gap={4} justify="flex-end" wrap="nowrap">
          {stopped ? (
            <Button size="xs" variant="light" disabled={readOnly} loading={busy} onClick={() => act("start", () => api.startService(s.stack, s.name))}>
              Start
            </Button>
          ) : (
            <Button size="xs" variant="light" color="gray" disabled={readOnly} loading={busy} onClick={() => act("stop", () => api.stopService(s.stack, s.name))}>
              Stop
            </Button>
          )}
          {s.kind !== "load-balancer" && (
            <Button size="xs" variant="light" disabled={readOnly || stopped} title={stopped ? "Start the service before upgrading it" : undefined} onClick={() => setEditing(true)} data-testid="service-edit">
              Edit
            </Button>
          )}
          <Button size="xs" variant="subtle" color="red" disabled={readOnly} onClick={() => setConfirming(true)}>
            Remove
          </Button>
        </Group>
        <ServiceUpgradeModal service={s} opened={editing} onClose={() => setEditing(false)} />
        <Confirm
          opened={confirming}
          onClose={() => setConfirming(false)}
          title={`Remove ${s.stack}/${s.name}?`}
          action="Remove service"
          onConfirm={() => act("remove", () => api.removeService(s.stack, s.name))}
        >
          Its {s.placed} container{s.placed === 1 ? " is" : "s are"} removed from the hosts
          {s.kind !== "load-balancer" && "; load balancers targeting it stop sending it requests"}.
        </Confirm>
      </Table.Td>
    </Table.Tr>
  );
}

const ROW_HEIGHT = 40;

/** What the containers filter looks in. */
const containerText = (c: Container) => [c.name, c.service, c.host, c.state, c.ip, c.status, c.reason].filter(Boolean).join(" ");

/**
 * Every container of the stack: a virtualised grid, so tens of thousands of rows scroll smoothly.
 * Its columns are CSS's (`.containers-grid`): narrow screens keep name, state and status.
 */
export function ContainerTable({ containers }: { containers: Container[] }) {
  const parent = useRef<HTMLDivElement>(null);
  const sorted = useMemo(() => [...containers].sort((a, b) => a.service.localeCompare(b.service) || a.instance - b.instance), [containers]);
  const filter = useFilter(sorted, containerText);
  const rows = filter.shown;
  const virtual = useVirtualizer({ count: rows.length, getScrollElement: () => parent.current, estimateSize: () => ROW_HEIGHT, overscan: 10 });
  return (
    <Stack gap="sm">
      <FilterInput value={filter.query} onChange={filter.setQuery} placeholder="Filter containers by name, service, host, state…" testId="containers-filter" count={rows.length} total={containers.length} />
      {rows.length === 0 ? (
        <NoMatch query={filter.query} />
      ) : (
        <Card withBorder padding={0}>
          <div className="grid-row grid-head containers-grid">
            <span>Name</span>
            <span className="wide-only">Service</span>
            <span className="wide-only">Host</span>
            <span>State</span>
            <span className="wide-only">IP</span>
            <span className="wide-only">Ports</span>
            <span>Status</span>
          </div>
          <div ref={parent} style={{ height: "min(60vh, 640px)", overflow: "auto" }} data-testid="containers-scroll">
            <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
              {virtual.getVirtualItems().map((item) => (
                <ContainerRow key={rows[item.index]!.name} c={rows[item.index]!} top={item.start} />
              ))}
            </div>
          </div>
        </Card>
      )}
    </Stack>
  );
}

// Plain elements styled by CSS, memoised: tens of thousands of rows scroll past this component.
const ContainerRow = memo(function ContainerRow({ c, top }: { c: Container; top: number }) {
  const hostDown = c.host_state !== "active" || c.host_responding === false;
  return (
    <div
      className="grid-row containers-grid"
      data-testid="container-row"
      data-state={c.state}
      data-failing={c.failing ? "true" : "false"}
      style={{ position: "absolute", top: 0, left: 0, right: 0, height: ROW_HEIGHT, transform: `translateY(${top}px)` }}
    >
      <Link to={`/containers/${encodeURIComponent(c.name)}`} className="cell link">
        {c.name}
      </Link>
      <Link to={`/stacks/${encodeURIComponent(c.stack)}/services/${encodeURIComponent(c.service)}`} className="cell link wide-only">
        {c.service}
      </Link>
      <Link
        to={`/hosts/${encodeURIComponent(c.host)}`}
        className={hostDown ? "cell link down wide-only" : "cell link wide-only"}
        title={hostDown ? (c.host_state === "active" ? "host not responding" : `host ${c.host_state}`) : undefined}
      >
        {c.host}
      </Link>
      <span className="cell">
        <ContainerStateCell c={c} chipColor={stateColor(c.state)} />
      </span>
      <span className="cell mono wide-only">{c.ip ?? "—"}</span>
      <span className="cell wide-only">{c.ports.map(formatPort).join(", ") || "—"}</span>
      <span className={c.failing ? "cell bad" : "cell dim"} title={[c.reason || c.status, ...(c.log ?? [])].join("\n")} data-testid="container-reason">
        {c.reason || c.status || "—"}
      </span>
    </div>
  );
});
