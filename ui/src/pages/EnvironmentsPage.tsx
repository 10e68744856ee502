import { Badge, Button, Card, Group, Modal, Stack, Table, Text, TextInput, Title, Tooltip } from "@mantine/core";
import { useState, type FormEvent } from "react";
import { api, selectEnv, selectedEnv, type Environment } from "../api.ts";
import { ConfirmDialog, EmptyState, ErrorBanner, ListSkeleton, NameForm, notifyDone, useFormSubmit } from "../components/common.tsx";
import { Ago } from "../clock.tsx";
import { useLive } from "../live.tsx";
import { useSession } from "../session.tsx";

/** Every environment the caller sees; admins create, rename and remove them here. */
export function EnvironmentsPage() {
  const envs = useLive("environments", ["environments"], (s) => api.environments(s));
  const { who } = useSession();
  const admin = who?.admin ?? true;
  const [removing, setRemoving] = useState<Environment | null>(null);
  const [renaming, setRenaming] = useState<Environment | null>(null);
  return (
    <Stack gap="md">
      <Title order={2}>Environments</Title>
      <Text size="sm" c="dimmed" maw={720}>
        Each environment has its own hosts, stacks and join token; the switcher at the top picks the one shown.
      </Text>
      {admin && (
        <NameForm
          label="New environment"
          placeholder="e.g. Production"
          submit="Create environment"
          failure="Could not create the environment"
          testIds={{ form: "create-environment-form", input: "environment-name", submit: "create-environment" }}
          create={async (name) => notifyDone(`Environment ${(await api.createEnvironment(name)).name} created`)}
        />
      )}
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
                        <Ago iso={e.created_at} />
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      {admin && (
                        <Group gap={4} justify="flex-end" wrap="nowrap">
                          <Button size="xs" variant="subtle" onClick={() => setRenaming(e)} data-testid="rename-environment">
                            Rename
                          </Button>
                          <Tooltip label={why} disabled={!why}>
                            <Button size="xs" variant="subtle" color="red" disabled={!!why} onClick={() => setRemoving(e)} data-testid="remove-environment">
                              Remove
                            </Button>
                          </Tooltip>
                        </Group>
                      )}
                    </Table.Td>
                  </Table.Tr>
                );
              })}
            </Table.Tbody>
          </Table>
        </Card>
      )}
      <ConfirmDialog
        title={`Remove environment ${removing?.name ?? ""}?`}
        confirm="Remove"
        opened={removing !== null}
        onClose={() => setRemoving(null)}
        failure={`Could not remove ${removing?.name ?? "the environment"}`}
        testId="confirm-remove-environment"
        action={async () => {
          if (!removing) return;
          await api.removeEnvironment(removing.name);
          notifyDone(`Environment ${removing.name} removed`);
        }}
      >
        Its join token stops working. Hosts and stacks are never removed with it: it must be empty.
      </ConfirmDialog>
      <RenameEnvironment env={renaming} onClose={() => setRenaming(null)} />
    </Stack>
  );
}

/** Renames an environment; everything in it (hosts, stacks, members, join token) stays with it. */
function RenameEnvironment({ env, onClose }: { env: Environment | null; onClose: () => void }) {
  return (
    <Modal opened={env !== null} onClose={onClose} title={`Rename environment ${env?.name ?? ""}`}>
      {/* Keyed by name: each opening starts from the environment's current name. */}
      {env && <RenameForm key={env.name} env={env} onDone={onClose} />}
    </Modal>
  );
}

function RenameForm({ env, onDone }: { env: Environment; onDone: () => void }) {
  const [name, setName] = useState(env.name);
  // A bad name (400) or a taken one (409) belongs under the field.
  const { errors, busy, run } = useFormSubmit(["name"], `Could not rename ${env.name}`, { 409: "name" });
  const error = errors.name;
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const renamed = await api.renameEnvironment(env.name, name.trim());
      // The UI was showing it: follow it to its new name rather than fall back to Default.
      if (selectedEnv() === env.name) selectEnv(renamed.name);
      notifyDone(`Environment ${env.name} is now ${renamed.name}`);
      onDone();
    });
  };
  return (
    <form onSubmit={submit} data-testid="rename-environment-form">
      <Stack gap="sm">
        <Text size="sm" c="dimmed">
          Its hosts, stacks, members and join token stay with it. Scripts and CLI settings that name it need the new name.
        </Text>
        <TextInput label="New name" value={name} onChange={(e) => setName(e.currentTarget.value)} error={error} data-autofocus data-testid="environment-new-name" />
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            Cancel
          </Button>
          <Button type="submit" loading={busy} data-testid="confirm-rename-environment">
            Rename
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
