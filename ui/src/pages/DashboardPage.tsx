// The environment at a glance: totals now, and the busiest hosts, containers and services.
import { Anchor, Card, Progress, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { useEffect, useState, type ReactNode } from "react";
import { Link } from "react-router";
import { onEnvChange, statsApi, type ContainerNow, type HostNow, type StatsSummary } from "../api.ts";
import { ErrorBanner, ListSkeleton } from "../components/common.tsx";
import { formatBytes } from "../format.ts";

const REFRESH_MS = 5_000;
const rate = (v: number) => (v > 0 ? `${formatBytes(v)}/s` : "0");

export function DashboardPage() {
  const [summary, setSummary] = useState<StatsSummary | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [generation, setGeneration] = useState(0);

  useEffect(() => onEnvChange(() => setGeneration((g) => g + 1)), []);
  useEffect(() => {
    let stop = false;
    const load = async () => {
      try {
        const s = await statsApi.summary();
        if (!stop) {
          setSummary(s);
          setError(null);
        }
      } catch (e) {
        if (!stop) setError(e instanceof Error ? e : new Error(String(e)));
      }
    };
    void load();
    const timer = window.setInterval(load, REFRESH_MS);
    return () => {
      stop = true;
      window.clearInterval(timer);
    };
  }, [generation]);

  return (
    <Stack gap="md" data-testid="dashboard">
      <Title order={2}>Dashboard</Title>
      {error && <ErrorBanner error={error} what="the dashboard" onRetry={() => setGeneration((g) => g + 1)} />}
      {!summary && !error && <ListSkeleton rows={2} height={90} />}
      {summary && <Totals s={summary} />}
      {summary && <Busiest s={summary} />}
    </Stack>
  );
}

function Totals({ s }: { s: StatsSummary }) {
  const cpu = s.cpu_cores > 0 ? (s.cpu_cores_used / s.cpu_cores) * 100 : 0;
  const memory = s.memory_total_bytes > 0 ? (s.memory_used_bytes / s.memory_total_bytes) * 100 : 0;
  return (
    <SimpleGrid cols={{ base: 1, sm: 2, lg: 4 }}>
      <Figure label="Hosts reporting" value={String(s.hosts)} sub={`${s.containers} containers`} testId="total-hosts" />
      <Figure label="CPU" value={`${s.cpu_cores_used.toFixed(1)} of ${s.cpu_cores} cores`} progress={cpu} />
      <Figure label="Memory" value={`${formatBytes(s.memory_used_bytes)} of ${formatBytes(s.memory_total_bytes)}`} progress={memory} />
      <Figure label="Network" value={`↓ ${rate(s.network_rx_bytes_per_second)}`} sub={`↑ ${rate(s.network_tx_bytes_per_second)}`} />
    </SimpleGrid>
  );
}

function Figure({ label, value, sub, progress, testId }: { label: string; value: string; sub?: string; progress?: number; testId?: string }) {
  return (
    <Card withBorder radius="md" padding="md" data-testid={testId}>
      <Text size="sm" c="dimmed">
        {label}
      </Text>
      <Text fw={700} size="lg">
        {value}
      </Text>
      {sub && (
        <Text size="sm" c="dimmed">
          {sub}
        </Text>
      )}
      {progress !== undefined && <Progress mt="xs" value={Math.min(progress, 100)} color={progress > 85 ? "red" : "teal"} />}
    </Card>
  );
}

/** One column of a "busiest" table: its heading and what a row shows in it. */
interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
}

const entityLink = (kind: "hosts" | "containers", name: string) => (
  <Anchor component={Link} to={`/${kind}/${encodeURIComponent(name)}`}>
    {name}
  </Anchor>
);

const HOST_COLUMNS: Column<HostNow>[] = [
  { header: "Host", cell: (h) => entityLink("hosts", h.host) },
  { header: "CPU", cell: (h) => `${h.cpu_percent.toFixed(1)} %` },
  { header: "Load", cell: (h) => h.load1.toFixed(2) },
  { header: "Memory", cell: (h) => `${formatBytes(h.memory_used_bytes)} / ${formatBytes(h.memory_total_bytes)}` },
];

const CONTAINER_COLUMNS: Column<ContainerNow>[] = [
  { header: "Container", cell: (c) => entityLink("containers", c.name) },
  { header: "Host", cell: (c) => entityLink("hosts", c.host) },
  { header: "CPU", cell: (c) => `${c.cpu_percent.toFixed(1)} %` },
  { header: "Memory", cell: (c) => formatBytes(c.memory_bytes) },
];

function Busiest({ s }: { s: StatsSummary }) {
  return (
    <SimpleGrid cols={{ base: 1, lg: 2 }}>
      <TopTable title="Busiest hosts" testId="busiest-hosts" rows={s.busiest_hosts} rowKey={(h) => h.host} columns={HOST_COLUMNS} />
      <TopTable title="Busiest containers" testId="busiest-containers" rows={s.busiest_containers} rowKey={(c) => c.name} columns={CONTAINER_COLUMNS} />
    </SimpleGrid>
  );
}

function TopTable<T>({ title, testId, rows, rowKey, columns }: { title: string; testId: string; rows: T[]; rowKey: (row: T) => string; columns: Column<T>[] }) {
  return (
    <Card withBorder radius="md">
      <Title order={4} mb="xs">
        {title}
      </Title>
      <Table data-testid={testId}>
        <Table.Thead>
          <Table.Tr>
            {columns.map((c) => (
              <Table.Th key={c.header}>{c.header}</Table.Th>
            ))}
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {rows.map((row) => (
            <Table.Tr key={rowKey(row)}>
              {columns.map((c) => (
                <Table.Td key={c.header}>{c.cell(row)}</Table.Td>
              ))}
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Card>
  );
}
