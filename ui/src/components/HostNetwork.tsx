// A host's part of the managed network on its page: its subnet, whether its tunnel runs, what is
// wrong with it, and each peer host's endpoint, last handshake and bytes each way.
import { Alert, Badge, Group, Stack, Table, Text, Title } from "@mantine/core";
import { useEffect } from "react";
import { networkApi } from "../api.ts";
import { Ago } from "../clock.tsx";
import { formatBytes } from "../format.ts";
import { useLive } from "../live.tsx";

/** Agents report their tunnels every 5 s without an event: the figures are fetched as often. */
const REFRESH_MS = 5_000;

export function HostNetwork({ name }: { name: string }) {
  const { data, error, reload } = useLive("network", ["hosts"], async (signal) => ({ at: Date.now(), view: await networkApi.network(signal) }));
  useEffect(() => {
    const timer = window.setInterval(reload, REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [reload]);
  if (error) return <Text c="red">{error.message}</Text>;
  const host = data?.view.hosts.find((h) => h.host === name);
  if (!data || !host) return null;
  const tunnel = host.tunnel;
  return (
    <Stack gap="xs" data-testid="host-network">
      <Title order={4}>Managed network</Title>
      <Group gap="md">
        <Text size="sm" data-testid="host-subnet">
          Subnet {host.subnet ?? "none"} of {data.view.subnet ?? "—"}
        </Text>
        {tunnel ? (
          <Badge color={tunnel.state === "up" ? "green" : "red"} variant="light" data-testid="tunnel-state">
            tunnel {tunnel.state} · udp/{tunnel.port}
          </Badge>
        ) : (
          <Badge color="gray" variant="light" data-testid="tunnel-state">
            {host.host_state === "active" ? "no tunnel" : "tunnel unknown while the agent is away"}
          </Badge>
        )}
      </Group>
      {host.problem && (
        <Alert color="orange" variant="light" p="xs" title="Problem on this host" data-testid="host-network-problem">
          <Text size="sm" style={{ whiteSpace: "pre-wrap", wordBreak: "break-word" }}>
            {host.problem}
          </Text>
        </Alert>
      )}
      {tunnel && tunnel.peers.length > 0 && (
        <Table striped withTableBorder data-testid="tunnel-peers">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Peer</Table.Th>
              <Table.Th>Subnet</Table.Th>
              <Table.Th>Endpoint</Table.Th>
              <Table.Th>Last handshake</Table.Th>
              <Table.Th>Received</Table.Th>
              <Table.Th>Sent</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {tunnel.peers.map((p) => (
              <Table.Tr key={p.host_id} data-testid="tunnel-peer" data-peer={p.host}>
                <Table.Td>{p.host}</Table.Td>
                <Table.Td>{p.subnet}</Table.Td>
                <Table.Td data-testid="peer-endpoint">{p.endpoint}</Table.Td>
                <Table.Td data-testid="peer-handshake">
                  {p.last_handshake_secs === null ? "never" : <Ago iso={new Date(data.at - p.last_handshake_secs * 1000).toISOString()} />}
                </Table.Td>
                <Table.Td data-testid="peer-rx">{formatBytes(p.rx_bytes)}</Table.Td>
                <Table.Td data-testid="peer-tx">{formatBytes(p.tx_bytes)}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
    </Stack>
  );
}
