// How services and containers stand, in colour and words: one state per service (red when all
// its containers fail, with why), a bar per host while an image is pulled, and each container's
// reason. Plain elements where rows are virtualised and counted in thousands.

import { Badge, Group, Progress, Stack, Text, Tooltip } from "@mantine/core";
import type { Container, Service } from "../api.ts";

/** A service's state -> a Mantine colour. */
export const STATUS_COLOR: Record<string, string> = {
  active: "green",
  starting: "blue",
  pulling: "blue",
  degraded: "orange",
  failing: "red",
  stopped: "gray",
};

/** The service's state word (older control planes send only `state`). */
export function serviceStatus(s: Service): string {
  return s.status ?? s.state ?? "active";
}

export function ServiceStatusBadge({ s }: { s: Service }) {
  const status = serviceStatus(s);
  return (
    <Badge color={STATUS_COLOR[status] ?? "gray"} variant={status === "failing" ? "filled" : "light"} tt="none" style={{ overflow: "visible" }} data-testid="service-status" data-status={status}>
      {status}
    </Badge>
  );
}

/** Why the service is not simply active, red when it is a failure. */
export function ServiceReason({ s }: { s: Service }) {
  if (!s.reason) return null;
  const status = serviceStatus(s);
  const bad = status === "failing" || status === "degraded";
  return (
    <Text size="xs" c={bad ? "red" : "dimmed"} data-testid="service-reason" style={{ wordBreak: "break-word" }}>
      {s.reason}
    </Text>
  );
}

/** A bar per host pulling the service's image. */
export function ServicePulls({ s }: { s: Service }) {
  if (!s.pulls || s.pulls.length === 0) return null;
  return (
    <Stack gap={2} mt={4} data-testid="service-pulls">
      {s.pulls.map((p) => (
        <Tooltip key={`${p.host} ${p.image}`} label={`${p.host} is pulling ${p.image}`}>
          <Group gap={6} wrap="nowrap">
            <Text size="xs" w={48} truncate>
              {p.host}
            </Text>
            <Progress value={p.percent} size="sm" style={{ flex: 1, minWidth: 60 }} aria-label={`${p.host} pulling ${p.image}`} data-testid="pull-progress" data-percent={p.percent} />
            <Text size="xs" w={40} ta="right">
              {p.percent} %
            </Text>
          </Group>
        </Tooltip>
      ))}
    </Stack>
  );
}

/** A container's state chip, or its pull's bar; red when it fails. */
export function ContainerStateCell({ c, chipColor }: { c: Container; chipColor: string }) {
  if (c.progress != null && c.state === "pulling") {
    return (
      <span className="pullbar" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={c.progress} aria-label={`${c.name} pulling its image`} data-testid="container-progress" title={c.reason ?? undefined}>
        <span className="pullbar-fill" style={{ width: `${c.progress}%` }} />
        <span className="pullbar-text">pulling {c.progress} %</span>
      </span>
    );
  }
  return <span className={`chip chip-${c.failing ? "red" : chipColor}`}>{c.state}</span>;
}
