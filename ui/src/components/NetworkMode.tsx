// A service's network mode: the select the create and edit forms share, and the line the service
// page shows. The four modes and what each means, in one place.

import { Badge, Group, Select, Text } from "@mantine/core";
import { api } from "../api.ts";
import { useLive } from "../live.tsx";

export const NETWORK_MODES = [
  { value: "managed", label: "Managed (default)", help: "The environment's network across its hosts: reached by other containers on any host, and through published ports" },
  { value: "bridge", label: "Bridge", help: "The engine's default bridge on its host: reached from elsewhere only through published ports" },
  { value: "host", label: "Host", help: "The host's own network: the container's ports are the host's, so it publishes none" },
  { value: "none", label: "None", help: "No network at all: nothing reaches it, and it reaches nothing" },
] as const;

function mode(value: string | undefined) {
  return NETWORK_MODES.find((m) => m.value === (value ?? "managed")) ?? NETWORK_MODES[0];
}

export function NetworkSelect({ value, onChange, error, testId }: { value: string; onChange: (v: string) => void; error?: string; testId: string }) {
  return (
    <Select
      label="Network"
      description={mode(value).help}
      data={NETWORK_MODES.map(({ value, label }) => ({ value, label }))}
      value={value}
      onChange={(v) => onChange(v ?? "managed")}
      allowDeselect={false}
      error={error}
      data-testid={testId}
    />
  );
}

/** The service's network on its page, with what it means. */
export function ServiceNetwork({ stack, service }: { stack: string; service: string }) {
  const loaded = useLive(`service/${stack}/${service}`, ["services"], (s) => api.service(stack, service, s));
  if (!loaded.data || loaded.data.kind === "load-balancer") return null;
  const m = mode(loaded.data.network);
  return (
    <Group gap="xs" data-testid="service-network" data-network={m.value}>
      <Text size="sm" fw={600}>
        Network
      </Text>
      <Badge variant="light" tt="none">
        {m.label.replace(" (default)", "")}
      </Badge>
      <Text size="sm" c="dimmed">
        {m.help}
      </Text>
    </Group>
  );
}
