import { Anchor, Card, Stack, Table, Text, Title } from "@mantine/core";
import { Link, useNavigate } from "react-router";
import { api } from "../api.ts";
import { EmptyState, ErrorBanner, ListSkeleton, NameForm } from "../components/common.tsx";
import { Ago } from "../clock.tsx";
import { FilterInput, NoMatch, useFilter } from "../components/Filter.tsx";
import { useLive } from "../live.tsx";
import { useEnvRights } from "../session.tsx";

export function StacksPage() {
  const stacks = useLive("stacks", ["stacks", "services"], (s) => api.stacks(s));
  const { change } = useEnvRights();
  const filter = useFilter(stacks.data, (s) => s.name);
  return (
    <Stack gap="md">
      <Title order={2}>Stacks</Title>
      {change && <CreateStackForm />}
      {stacks.error && <ErrorBanner error={stacks.error} what="stacks" onRetry={stacks.reload} />}
      {stacks.loading && <ListSkeleton rows={3} height={40} />}
      {stacks.data && stacks.data.length === 0 && (
        <EmptyState title="No stacks yet" testId="stacks-empty">
          A stack groups services that belong together. Name one above to create it, then add services to it.
        </EmptyState>
      )}
      {stacks.data && stacks.data.length > 0 && (
        <FilterInput value={filter.query} onChange={filter.setQuery} placeholder="Filter stacks by name" testId="stacks-filter" count={filter.shown.length} total={stacks.data.length} />
      )}
      {stacks.data && stacks.data.length > 0 && filter.shown.length === 0 && <NoMatch query={filter.query} />}
      {stacks.data && filter.shown.length > 0 && (
        <Card withBorder padding={0}>
          <Table highlightOnHover data-testid="stacks-table">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Services</Table.Th>
                <Table.Th>Created</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {filter.shown
                .sort((a, b) => a.name.localeCompare(b.name))
                .map((s) => (
                  <Table.Tr key={s.name}>
                    <Table.Td>
                      <Anchor component={Link} to={`/stacks/${encodeURIComponent(s.name)}`} data-testid="stack-link">
                        {s.name}
                      </Anchor>
                    </Table.Td>
                    <Table.Td>{s.services}</Table.Td>
                    <Table.Td>
                      <Text size="sm" c="dimmed">
                        <Ago iso={s.created_at} />
                      </Text>
                    </Table.Td>
                  </Table.Tr>
                ))}
            </Table.Tbody>
          </Table>
        </Card>
      )}
    </Stack>
  );
}

function CreateStackForm() {
  const navigate = useNavigate();
  return (
    <NameForm
      label="New stack"
      placeholder="e.g. WEB-Server"
      submit="Create stack"
      failure="Could not create the stack"
      testIds={{ form: "create-stack-form", input: "stack-name", submit: "create-stack" }}
      create={async (name) => {
        const stack = await api.createStack(name);
        navigate(`/stacks/${encodeURIComponent(stack.name)}`);
      }}
    />
  );
}
