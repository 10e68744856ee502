// Pages that are mostly charts: a host's and a service's usage over time.
import { Anchor, Breadcrumbs, Stack, Text, Title } from "@mantine/core";
import { Link, useParams } from "react-router";
import { ServiceNetwork } from "../components/NetworkMode.tsx";
import { HostNetwork } from "../components/HostNetwork.tsx";
import { StatsPanel } from "../components/StatsPanel.tsx";

export function HostPage() {
  const { name = "" } = useParams();
  return (
    <Stack gap="md">
      <Breadcrumbs>
        <Anchor component={Link} to="/hosts">
          Hosts
        </Anchor>
        <Text>{name}</Text>
      </Breadcrumbs>
      <Title order={2}>{name}</Title>
      <HostNetwork name={name} />
      <StatsPanel target={{ kind: "host", name }} />
    </Stack>
  );
}

export function ServicePage() {
  const { stack = "", service = "" } = useParams();
  return (
    <Stack gap="md">
      <Breadcrumbs>
        <Anchor component={Link} to="/stacks">
          Stacks
        </Anchor>
        <Anchor component={Link} to={`/stacks/${encodeURIComponent(stack)}`}>
          {stack}
        </Anchor>
        <Text>{service}</Text>
      </Breadcrumbs>
      <Title order={2}>
        {stack}/{service}
      </Title>
      <ServiceNetwork stack={stack} service={service} />
      <Text size="sm" c="dimmed">
        Totals over the service's containers.
      </Text>
      <StatsPanel target={{ kind: "service", stack, service }} />
    </Stack>
  );
}
