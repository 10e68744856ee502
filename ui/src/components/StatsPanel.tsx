// History charts of a host, container or service, refreshed while shown.
import { Group, SegmentedControl, SimpleGrid, Stack, Text, Title } from "@mantine/core";
import { useEffect, useMemo, useState } from "react";
import { api, statsApi, type StatsHistory, type StatsTarget } from "../api.ts";
import { Chart } from "./Chart.tsx";

const RANGES = [
  { value: "15m", label: "15 min" },
  { value: "1h", label: "1 hour" },
  { value: "1d", label: "1 day" },
  { value: "7d", label: "7 days" },
  { value: "30d", label: "30 days" },
];
/** New 5 s samples arrive all the time; the short ranges are worth refreshing often. */
const REFRESH_MS = 10_000;

/**
 * Agents report a container without a memory limit as limited to its host's memory: a limit
 * counts only when it is below that (with room for rounding between Docker and the host's facts).
 */
const REAL_LIMIT_SHARE = 0.98;

/** A container's host memory, to tell a real memory limit from none; null until known. */
function useHostMemory(target: StatsTarget): number | null {
  const [memory, setMemory] = useState<number | null>(null);
  const name = target.kind === "container" ? target.name : null;
  useEffect(() => {
    setMemory(null);
    if (name === null) return;
    const ctl = new AbortController();
    api
      .container(name, ctl.signal)
      .then((c) => api.host(c.host, ctl.signal))
      .then((h) => setMemory(h.memory_bytes))
      .catch(() => {
        /* unknown: no limit line is drawn */
      });
    return () => ctl.abort();
  }, [name]);
  return memory;
}

export function StatsPanel({ target }: { target: StatsTarget }) {
  const [range, setRange] = useState("15m");
  const [history, setHistory] = useState<StatsHistory | null>(null);
  const [error, setError] = useState<string | null>(null);
  const key = JSON.stringify(target);
  const hostMemory = useHostMemory(target);

  useEffect(() => {
    let stop = false;
    let controller = new AbortController();
    const load = async () => {
      controller.abort();
      controller = new AbortController();
      try {
        const h = await statsApi.history(target, range, controller.signal);
        if (!stop) {
          setHistory(h);
          setError(null);
        }
      } catch (e) {
        if (!stop && !(e instanceof DOMException && e.name === "AbortError")) setError(e instanceof Error ? e.message : String(e));
      }
    };
    void load();
    const timer = window.setInterval(load, REFRESH_MS);
    return () => {
      stop = true;
      controller.abort();
      window.clearInterval(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, range]);

  const isHost = target.kind === "host";
  // A host's total memory is always worth the line; a service's limits (a sum over hosts) never
  // are; a container's only when it has a limit of its own.
  const showLimit = useMemo(() => {
    if (isHost) return true;
    if (target.kind !== "container" || hostMemory === null) return false;
    return (history?.points ?? []).some((p) => p.memory_limit_bytes > 0 && p.memory_limit_bytes < hostMemory * REAL_LIMIT_SHARE);
  }, [isHost, target.kind, hostMemory, history]);

  const data = useMemo(() => {
    const p = history?.points ?? [];
    const used = p.map((x) => x.memory_bytes);
    return {
      times: p.map((x) => x.ts),
      cpu: [p.map((x) => x.cpu_percent)],
      memory: showLimit ? [used, p.map((x) => x.memory_limit_bytes)] : [used],
      network: [p.map((x) => x.network_rx_bytes_per_second), p.map((x) => x.network_tx_bytes_per_second)],
      io: [p.map((x) => x.io_read_bytes_per_second), p.map((x) => x.io_write_bytes_per_second)],
    };
  }, [history, showLimit]);

  return (
    <Stack gap="xs" data-testid="stats-panel">
      <Group justify="space-between">
        <Title order={4}>Usage</Title>
        <SegmentedControl size="xs" value={range} onChange={setRange} data={RANGES} data-testid="stats-range" />
      </Group>
      {error && (
        <Text c="red" size="sm" data-testid="stats-error">
          {error}
        </Text>
      )}
      {history && history.points.length === 0 && (
        <Text c="dimmed" size="sm">
          No samples in this range yet: agents report every 5 seconds.
        </Text>
      )}
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Chart
          title={isHost ? "CPU (% of all cores)" : "CPU (% of one core)"}
          testId="stats-chart"
          times={data.times}
          values={data.cpu}
          series={[{ label: "CPU", color: "#12b886" }]}
          unit="percent"
        />
        <Chart
          title="Memory"
          times={data.times}
          values={data.memory}
          testId="memory-chart"
          series={[{ label: "used", color: "#228be6" }, ...(showLimit ? [{ label: isHost ? "total" : "limit", color: "#adb5bd" }] : [])]}
          unit="bytes"
        />
        <Chart
          title="Network"
          times={data.times}
          values={data.network}
          series={[
            { label: "received", color: "#7950f2" },
            { label: "sent", color: "#f76707" },
          ]}
          unit="rate"
        />
        <Chart
          title={isHost ? "Disk I/O" : "Block I/O"}
          times={data.times}
          values={data.io}
          series={[
            { label: "read", color: "#15aabf" },
            { label: "written", color: "#e64980" },
          ]}
          unit="rate"
        />
      </SimpleGrid>
    </Stack>
  );
}
