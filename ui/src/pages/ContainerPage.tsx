import { Alert, Anchor, Badge, Breadcrumbs, Button, Card, Code, Group, SimpleGrid, Stack, Switch, Text, Title } from "@mantine/core";
import { useEffect, useRef, useState, type ReactNode } from "react";
import { Link, useParams } from "react-router";
import { ApiError, api, openLogs, type ContainerDetails } from "../api.ts";
import { ErrorBanner, ListSkeleton } from "../components/common.tsx";
import { ContainerActions } from "../components/ContainerActions.tsx";
import { StatsPanel } from "../components/StatsPanel.tsx";
import { Ago } from "../clock.tsx";
import { formatPort, shellQuote, stateColor } from "../format.ts";
import { useLive, useLiveState } from "../live.tsx";

/** Details from `GET /v1/containers/{name}`; from the list when the control plane predates it. */
async function loadContainer(name: string, signal: AbortSignal): Promise<ContainerDetails> {
  try {
    return await api.container(name, signal);
  } catch (e) {
    if (!(e instanceof ApiError) || e.code === "not_found") throw e;
    const found = (await api.containers({}, signal)).find((c) => c.name === name);
    if (!found) throw e;
    return found;
  }
}

export function ContainerPage() {
  const { name = "" } = useParams();
  const c = useLive(`container/${name}`, ["containers", "hosts"], (s) => loadContainer(name, s));
  return (
    <Stack gap="md">
      <Breadcrumbs>
        <Anchor component={Link} to="/stacks">
          Stacks
        </Anchor>
        {c.data && (
          <Anchor component={Link} to={`/stacks/${encodeURIComponent(c.data.stack)}`}>
            {c.data.stack}
          </Anchor>
        )}
        <Text>{name}</Text>
      </Breadcrumbs>
      <Group gap="sm" justify="space-between">
        <Group gap="sm">
          <Title order={2}>{name}</Title>
          {c.data && (
            <Badge color={stateColor(c.data.state)} variant="light" data-testid="container-state">
              {c.data.state}
            </Badge>
          )}
        </Group>
        {c.data && <ContainerActions c={c.data} />}
      </Group>
      {c.error && <ErrorBanner error={c.error} what={`container ${name}`} onRetry={c.reload} />}
      {c.loading && <ListSkeleton rows={2} height={80} />}
      {c.data && <Details c={c.data} />}
      {c.data && <StatsPanel target={{ kind: "container", name }} />}
      {c.data && <Logs name={name} hostState={c.data.host_state} host={c.data.host} />}
    </Stack>
  );
}

function Details({ c }: { c: ContainerDetails }) {
  const facts: [string, ReactNode][] = [
    [
      "Service",
      <>
        <Anchor component={Link} to={`/stacks/${encodeURIComponent(c.stack)}/services/${encodeURIComponent(c.service)}`} inherit data-testid="container-service-link">
          {c.stack}/{c.service}
        </Anchor>{" "}
        #{c.instance}
      </>,
    ],
    [
      "Host",
      <>
        <Anchor component={Link} to={`/hosts/${encodeURIComponent(c.host)}`} inherit data-testid="container-host-link">
          {c.host}
        </Anchor>{" "}
        ({c.host_state === "active" && c.host_responding === false ? "not responding" : c.host_state})
      </>,
    ],
    [
      "Status",
      <Text span size="sm" c={c.failing ? "red" : undefined} data-testid="container-reason" key="status">
        {c.reason || c.status || "—"}
      </Text>,
    ],
    ["IP", c.ip ?? "—"],
    ["Ports", c.ports.map(formatPort).join(", ") || "—"],
    ["Image", c.image ?? "—"],
    ["Command", c.command && c.command.length ? c.command.map(shellQuote).join(" ") : "image default"],
    ["Started", c.started_at ? <Ago iso={c.started_at} key="started" /> : "—"],
    ["Exit code", c.exit_code == null ? "—" : String(c.exit_code)],
    ["Restarts", c.restart_count == null ? "—" : String(c.restart_count)],
    ["Docker id", c.docker_id ? c.docker_id.slice(0, 12) : "not created yet"],
  ];
  return (
    <Card withBorder>
      <SimpleGrid cols={{ base: 1, sm: 2, lg: 3 }} spacing="sm" data-testid="container-details">
        {facts.map(([k, v]) => (
          <div key={k}>
            <Text size="xs" c="dimmed">
              {k}
            </Text>
            <Text size="sm" component="div" style={{ wordBreak: "break-all" }}>
              {v}
            </Text>
          </div>
        ))}
      </SimpleGrid>
      {c.log && c.log.length > 0 && (
        <div>
          <Text size="xs" c="dimmed" mt="sm">
            Last lines it printed
          </Text>
          <Code block data-testid="exit-log">
            {c.log.join("\n")}
          </Code>
        </div>
      )}
      {c.env && c.env.length > 0 && (
        <Group gap={4} mt="sm">
          {c.env.map((e) => (
            <Code key={e}>{e}</Code>
          ))}
        </Group>
      )}
    </Card>
  );
}

const MAX_LINES = 5000;
type Line = { stream: string; line: string };
type LogState = { kind: "connecting" } | { kind: "streaming" } | { kind: "ended"; reason: string } | { kind: "failed" };

function Logs({ name, hostState, host }: { name: string; hostState: string; host: string }) {
  const [lines, setLines] = useState<Line[]>([]);
  const [state, setState] = useState<LogState>({ kind: "connecting" });
  const [follow, setFollow] = useState(true);
  const [attempt, setAttempt] = useState(0);
  const box = useRef<HTMLDivElement>(null);
  const { env } = useLiveState();
  const connected = hostState === "active";

  useEffect(() => {
    if (!connected) return;
    setLines([]);
    setState({ kind: "connecting" });
    let ended = false;
    const ws = openLogs(name, (f) => {
      if ("type" in f) {
        ended = true;
        setState({ kind: "ended", reason: f.reason });
        return;
      }
      setState({ kind: "streaming" });
      setLines((prev) => {
        const next = prev.length >= MAX_LINES ? prev.slice(prev.length - MAX_LINES + 1) : prev.slice();
        next.push(f);
        return next;
      });
    });
    ws.onopen = () => setState((s) => (s.kind === "connecting" ? { kind: "streaming" } : s));
    ws.onclose = () => {
      if (!ended) setState({ kind: "failed" });
    };
    return () => {
      ended = true;
      ws.close();
    };
  }, [name, connected, attempt, env]);

  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines, follow]);

  return (
    <Card withBorder padding="sm">
      <Group justify="space-between" mb="xs">
        <Group gap="xs">
          <Title order={4}>Logs</Title>
          {connected && (
            <Badge variant="dot" color={state.kind === "streaming" ? "green" : state.kind === "connecting" ? "gray" : "orange"} data-testid="log-state">
              {state.kind}
            </Badge>
          )}
        </Group>
        <Group gap="sm">
          <Switch label="Follow" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} />
          {(state.kind === "failed" || state.kind === "ended") && connected && (
            <Button size="xs" variant="light" onClick={() => setAttempt((a) => a + 1)}>
              Reconnect
            </Button>
          )}
        </Group>
      </Group>
      {!connected && (
        <Alert color="orange" title="Logs are not available right now" data-testid="logs-host-disconnected" mb="xs">
          Host {host} is {hostState}: the control plane reads logs through the host's agent. They appear here once the agent
          reconnects.
        </Alert>
      )}
      {state.kind === "failed" && connected && (
        <Alert color="orange" mb="xs" data-testid="logs-failed">
          The log stream closed. The container may be gone or its host may have just disconnected; reconnect to try again.
        </Alert>
      )}
      {state.kind === "ended" && (
        <Text size="xs" c="dimmed" mb="xs">
          Stream ended: {state.reason}
        </Text>
      )}
      {connected && (
        <div
          ref={box}
          className="logs"
          data-testid="logs"
          onScroll={(e) => {
            const el = e.currentTarget;
            const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
            if (atBottom !== follow) setFollow(atBottom);
          }}
        >
          {lines.length === 0 && connected && <span className="muted">{state.kind === "connecting" ? "Connecting…" : "No output yet."}</span>}
          {lines.map((l, i) => (
            <div key={i} className={l.stream === "stderr" ? "log-line stderr" : "log-line"}>
              {l.line}
            </div>
          ))}
        </div>
      )}
    </Card>
  );
}
