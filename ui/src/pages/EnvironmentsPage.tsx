import { Badge, Button, Card, Group, Modal, Stack, Table, Text, TextInput, Title, Tooltip } from "@mantine/core";
import { useState, type FormEvent } from "react";
import { ApiError, api, type Environment } from "../api.ts";
import { EmptyState, ErrorBanner, ListSkeleton, fieldError, notifyDone, notifyError } from "../components/common.tsx";
import { formatSince } from "../format.ts";
import { useLive } from "../live.tsx";
import { useSession } from "../session.tsx";

/** Every environment the caller sees; admins create and remove them here. */
export function EnvironmentsPage() {
  const envs = useLive("environments", ["environments"], (s) => api.environments(s));
  const { who } = useSession();
  const admin = who?.admin ?? true;
  const [removing, setRemoving] = useState<Environment | null>(null);
  return (
    <Stack gap="md">
      <Title order={2}>Environments</Title>
      <Text size="sm" c="dimmed" maw={720}>
        Each environment has its own hosts, stacks and join token; the switcher at the top picks the one shown.
      </Text>
      {admin && <CreateEnvironmentForm />}
      {envs.error && <ErrorBanner error={envs.error} what="environments" onRetry={envs.reload} />}
      {envs.loading && <ListSkeleton rows={2} height={40} />}
      {envs.data && envs.data.length === 0 && <EmptyState title="No environments you may see" />}
      {envs.data && envs.data.length > 0 && (
        <Card withBorder padding={0}>
          <Table data-testid="environments-table">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Hosts</Table.Th>
                <Table.Th>Stacks</Table.Th>
                <Table.Th>Your role</Table.Th>
                <Table.Th>Created</Table.Th>
                <Table.Th />
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {envs.data.map((e) => {
                // The API refuses these too; saying why beats a refusal after the click.
                const why = e.name === "Default" ? "The default environment stays" : (e.hosts ?? 0) > 0 || (e.stacks ?? 0) > 0 ? "Only an empty environment (no hosts, no stacks) can be removed" : null;
                return (
                  <Table.Tr key={e.name} data-testid="environment-row" data-env={e.name}>
                    <Table.Td>
                      <Text fw={500}>{e.name}</Text>
                    </Table.Td>
                    <Table.Td>{e.hosts ?? "—"}</Table.Td>
                    <Table.Td>{e.stacks ?? "—"}</Table.Td>
                    <Table.Td>{e.role && <Badge variant="light">{e.role}</Badge>}</Table.Td>
                    <Table.Td>
                      <Text size="sm" c="dimmed">
                        {formatSince(e.created_at)}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      {admin && (
                        <Tooltip label={why} disabled={!why}>
                          <Button size="xs" variant="subtle" color="red" disabled={!!why} onClick={() => setRemoving(e)} data-testid="remove-environment">
                            Remove
                          </Button>
                        </Tooltip>
                      )}
                    </Table.Td>
                  </Table.Tr>
                );
              })}
            </Table.Tbody>
          </Table>
        </Card>
      )}
      <RemoveEnvironment env={removing} onClose={() => setRemoving(null)} />
    </Stack>
  );
}

function CreateEnvironmentForm() {
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const env = await api.createEnvironment(name.trim());
      setName("");
      notifyDone(`Environment ${env.name} created`);
    } catch (err) {
      // A bad or taken name belongs under the field; anything else is a notification.
      const f = fieldError(err, ["name"]);
      if (f) setError(f.message);
      else if (err instanceof ApiError && err.status === 409) setError(err.message);
      else notifyError("Could not create the environment", err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Card withBorder>
      <form onSubmit={submit} data-testid="create-environment-form">
        <Group align="flex-start">
          <TextInput
            label="New environment"
            placeholder="e.g. Production"
            value={name}
            onChange={(e) => setName(e.currentTarget.value)}
            error={error}
            name="name"
            style={{ flex: 1 }}
            maw={420}
            data-testid="environment-name"
          />
          <Button type="submit" loading={busy} mt={25} data-testid="create-environment">
            Create environment
          </Button>
        </Group>
      </form>
    </Card>
  );
}

function RemoveEnvironment({ env, onClose }: { env: Environment | null; onClose: () => void }) {
  const [busy, setBusy] = useState(false);
  const remove = async () => {
    if (!env) return;
    setBusy(true);
    try {
      await api.removeEnvironment(env.name);
      notifyDone(`Environment ${env.name} removed`);
      onClose();
    } catch (err) {
      notifyError(`Could not remove ${env.name}`, err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal opened={env !== null} onClose={onClose} title={`Remove environment ${env?.name ?? ""}?`}>
      <Text size="sm">Its join token stops working. Hosts and stacks are never removed with it: it must be empty.</Text>
      <Group justify="flex-end" mt="lg">
        <Button variant="default" onClick={onClose}>
          Cancel
        </Button>
        <Button color="red" loading={busy} onClick={() => void remove()} data-testid="confirm-remove-environment">
          Remove
        </Button>
      </Group>
    </Modal>
  );
}

