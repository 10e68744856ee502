// The environment at a glance: totals now, and the busiest hosts, containers and services.
import { Anchor, Card, Progress, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { useEffect, useState } from "react";
import { Link } from "react-router";
import { onEnvChange, statsApi, type StatsSummary } from "../api.ts";
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

function Busiest({ s }: { s: StatsSummary }) {
  return (
    <SimpleGrid cols={{ base: 1, lg: 2 }}>
      <Card withBorder radius="md">
        <Title order={4} mb="xs">
          Busiest hosts
        </Title>
        <Table data-testid="busiest-hosts">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Host</Table.Th>
              <Table.Th>CPU</Table.Th>
              <Table.Th>Load</Table.Th>
              <Table.Th>Memory</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {s.busiest_hosts.map((h) => (
              <Table.Tr key={h.host}>
                <Table.Td>
                  <Anchor component={Link} to={`/hosts/${encodeURIComponent(h.host)}`}>
                    {h.host}
                  </Anchor>
                </Table.Td>
                <Table.Td>{h.cpu_percent.toFixed(1)} %</Table.Td>
                <Table.Td>{h.load1.toFixed(2)}</Table.Td>
                <Table.Td>
                  {formatBytes(h.memory_used_bytes)} / {formatBytes(h.memory_total_bytes)}
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Card>
      <Card withBorder radius="md">
        <Title order={4} mb="xs">
          Busiest containers
        </Title>
        <Table data-testid="busiest-containers">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Container</Table.Th>
              <Table.Th>Host</Table.Th>
              <Table.Th>CPU</Table.Th>
              <Table.Th>Memory</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {s.busiest_containers.map((c) => (
              <Table.Tr key={c.name}>
                <Table.Td>
                  <Anchor component={Link} to={`/containers/${encodeURIComponent(c.name)}`}>
                    {c.name}
                  </Anchor>
                </Table.Td>
                <Table.Td>{c.host}</Table.Td>
                <Table.Td>{c.cpu_percent.toFixed(1)} %</Table.Td>
                <Table.Td>{formatBytes(c.memory_bytes)}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Card>
    </SimpleGrid>
  );
}
