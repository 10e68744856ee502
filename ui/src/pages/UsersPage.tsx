// Users and groups: administrators' pages (the API refuses everyone else, and the navigation
// offers them to administrators only). Roles in an environment are given on its Members page.

import { ActionIcon, Badge, Button, Card, Checkbox, CloseButton, Group, Modal, PasswordInput, Select, Stack, Table, Text, TextInput, Title, Tooltip } from "@mantine/core";
import { useState, type FormEvent } from "react";
import { api, type Group as UserGroup, type User } from "../api.ts";
import { ConfirmDialog, EmptyState, ErrorBanner, ListSkeleton, NameForm, notifyDone, notifyError, useFormSubmit } from "../components/common.tsx";
import { Ago } from "../clock.tsx";
import { useLive } from "../live.tsx";

/** The user every control plane has; the API keeps it. */
const BUILT_IN_ADMIN = "admin";

// Users and groups are not environment lists the event stream announces: each page refetches
// after its own changes (and on Retry).
const useUsers = () => useLive("users", [], (s) => api.users(s));
const useGroups = () => useLive("groups", [], (s) => api.groups(s));

export function UsersPage() {
  const users = useUsers();
  const [passwordFor, setPasswordFor] = useState<User | null>(null);
  const [removing, setRemoving] = useState<User | null>(null);
  return (
    <Stack gap="md">
      <Title order={2}>Users</Title>
      <Text size="sm" c="dimmed" maw={720}>
        People who sign in to Corral. Administrators see and change everything; anyone else sees only the environments
        where they (or one of their groups) have a role, given on each environment's Members page.
      </Text>
      {!users.error && <CreateUserForm onCreated={users.reload} />}
      {users.error && <ErrorBanner error={users.error} what="users" onRetry={users.reload} />}
      {users.loading && <ListSkeleton rows={3} height={40} />}
      {users.data && (
        <Card withBorder padding={0}>
          <Table data-testid="users-table">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Signs in with</Table.Th>
                <Table.Th>Created</Table.Th>
                <Table.Th />
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {users.data.map((u) => (
                <Table.Tr key={u.name} data-testid="user-row" data-user={u.name}>
                  <Table.Td>
                    <Group gap="xs">
                      <Text fw={500}>{u.name}</Text>
                      {u.admin && (
                        <Badge variant="light" color="grape" data-testid="user-admin">
                          admin
                        </Badge>
                      )}
                    </Group>
                  </Table.Td>
                  <Table.Td>
                    <Text size="sm">{u.password ? "password" : "API keys only"}</Text>
                  </Table.Td>
                  <Table.Td>
                    <Text size="sm" c="dimmed">
                      <Ago iso={u.created_at} />
                    </Text>
                  </Table.Td>
                  <Table.Td>
                    <Group gap={4} justify="flex-end" wrap="nowrap">
                      <Button size="xs" variant="subtle" onClick={() => setPasswordFor(u)} data-testid="set-password">
                        Set password
                      </Button>
                      <Tooltip label="The built-in administrator stays" disabled={u.name !== BUILT_IN_ADMIN}>
                        <Button size="xs" variant="subtle" color="red" disabled={u.name === BUILT_IN_ADMIN} onClick={() => setRemoving(u)} data-testid="remove-user">
                          Delete
                        </Button>
                      </Tooltip>
                    </Group>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Card>
      )}
      <Modal opened={passwordFor !== null} onClose={() => setPasswordFor(null)} title={`New password for ${passwordFor?.name ?? ""}`}>
        {passwordFor && <PasswordForm key={passwordFor.name} user={passwordFor} onDone={() => { setPasswordFor(null); users.reload(); }} />}
      </Modal>
      <ConfirmDialog
        title={`Delete user ${removing?.name ?? ""}?`}
        confirm="Delete"
        opened={removing !== null}
        onClose={() => setRemoving(null)}
        failure={`Could not delete ${removing?.name ?? "the user"}`}
        testId="confirm-remove-user"
        action={async () => {
          if (!removing) return;
          await api.removeUser(removing.name);
          notifyDone(`User ${removing.name} deleted`);
          users.reload();
        }}
      >
        Their sessions, API keys, group memberships and roles go with them; the audit log keeps their name.
      </ConfirmDialog>
    </Stack>
  );
}

function CreateUserForm({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [admin, setAdmin] = useState(false);
  const { errors, busy, run } = useFormSubmit(["name", "password", "admin"], "Could not create the user", { 409: "name" });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const user = await api.createUser(name.trim(), password, admin);
      setName("");
      setPassword("");
      setAdmin(false);
      notifyDone(`User ${user.name} created`);
      onCreated();
    });
  };
  return (
    <Card withBorder>
      <form onSubmit={submit} data-testid="create-user-form">
        <Group align="flex-start">
          <TextInput label="New user" placeholder="e.g. ann" value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} w={220} data-testid="user-name" />
          <PasswordInput
            label="Password"
            autoComplete="new-password"
            value={password}
            onChange={(e) => setPassword(e.currentTarget.value)}
            error={errors.password}
            // PasswordInput marks only data-invalid; screen readers (and tests) read aria-invalid.
            aria-invalid={errors.password ? true : undefined}
            w={260}
            data-testid="user-password"
          />
          <Checkbox label="Administrator" checked={admin} onChange={(e) => setAdmin(e.currentTarget.checked)} error={errors.admin} mt={32} data-testid="user-admin-flag" />
          <Button type="submit" loading={busy} mt={25} data-testid="create-user">
            Create user
          </Button>
        </Group>
      </form>
    </Card>
  );
}

function PasswordForm({ user, onDone }: { user: User; onDone: () => void }) {
  const [password, setPassword] = useState("");
  const { errors, busy, run } = useFormSubmit(["password"], `Could not set the password of ${user.name}`);
  const error = errors.password;
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      await api.setPassword(user.name, password);
      notifyDone(`Password of ${user.name} changed; their sessions ended`);
      onDone();
    });
  };
  return (
    <form onSubmit={submit} data-testid="password-form">
      <Stack gap="sm">
        <PasswordInput label="Password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.currentTarget.value)} error={error} aria-invalid={error ? true : undefined} data-autofocus data-testid="new-password" />
        <Text size="xs" c="dimmed">
          Their open sessions end: they sign in again with the new password.
        </Text>
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            Cancel
          </Button>
          <Button type="submit" loading={busy} data-testid="save-password">
            Set password
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

export function GroupsPage() {
  const groups = useGroups();
  const users = useUsers();
  const [removing, setRemoving] = useState<UserGroup | null>(null);
  return (
    <Stack gap="md">
      <Title order={2}>Groups</Title>
      <Text size="sm" c="dimmed" maw={720}>
        A group gets a role in an environment like a user does, and every user in it has that role there.
      </Text>
      {!groups.error && (
        <NameForm
          label="New group"
          placeholder="e.g. developers"
          submit="Create group"
          failure="Could not create the group"
          testIds={{ form: "create-group-form", input: "group-name", submit: "create-group" }}
          create={async (name) => {
            notifyDone(`Group ${(await api.createGroup(name)).name} created`);
            groups.reload();
          }}
        />
      )}
      {groups.error && <ErrorBanner error={groups.error} what="groups" onRetry={groups.reload} />}
      {groups.loading && <ListSkeleton rows={2} height={60} />}
      {groups.data && groups.data.length === 0 && <EmptyState title="No groups yet" testId="groups-empty">Name one above, then add users to it.</EmptyState>}
      {groups.data?.map((g) => (
        <GroupCard key={g.name} group={g} users={(users.data ?? []).map((u) => u.name)} onChanged={groups.reload} onRemove={() => setRemoving(g)} />
      ))}
      <ConfirmDialog
        title={`Delete group ${removing?.name ?? ""}?`}
        confirm="Delete"
        opened={removing !== null}
        onClose={() => setRemoving(null)}
        failure={`Could not delete ${removing?.name ?? "the group"}`}
        testId="confirm-remove-group"
        action={async () => {
          if (!removing) return;
          await api.removeGroup(removing.name);
          notifyDone(`Group ${removing.name} deleted`);
          groups.reload();
        }}
      >
        Its users keep their own roles, but lose the ones they had through this group.
      </ConfirmDialog>
    </Stack>
  );
}

function GroupCard({ group, users, onChanged, onRemove }: { group: UserGroup; users: string[]; onChanged: () => void; onRemove: () => void }) {
  const [adding, setAdding] = useState<string | null>(null);
  const change = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      onChanged();
    } catch (err) {
      notifyError(what, err);
    }
  };
  const addable = users.filter((u) => !group.members.includes(u));
  return (
    <Card withBorder data-testid="group-card" data-group={group.name}>
      <Group justify="space-between" mb="xs">
        <Group gap="xs">
          <Title order={4}>{group.name}</Title>
          <Text size="sm" c="dimmed">
            {group.members.length} user{group.members.length === 1 ? "" : "s"}
          </Text>
        </Group>
        <Button size="xs" variant="subtle" color="red" onClick={onRemove} data-testid="remove-group">
          Delete group
        </Button>
      </Group>
      <Group gap={6} mb="sm">
        {group.members.length === 0 && (
          <Text size="sm" c="dimmed">
            No users yet.
          </Text>
        )}
        {group.members.map((u) => (
          <Badge
            key={u}
            variant="light"
            tt="none"
            data-testid="group-member"
            data-user={u}
            rightSection={
              <CloseButton
                size="xs"
                aria-label={`Remove ${u} from ${group.name}`}
                onClick={() => void change(`Could not remove ${u} from ${group.name}`, () => api.removeFromGroup(group.name, u))}
                data-testid="remove-group-member"
              />
            }
          >
            {u}
          </Badge>
        ))}
      </Group>
      <Group gap="xs">
        <Select
          placeholder={addable.length ? "Add a user…" : "Every user is in it"}
          data={addable}
          value={adding}
          onChange={setAdding}
          searchable
          disabled={addable.length === 0}
          w={240}
          size="xs"
          comboboxProps={{ withinPortal: true }}
          data-testid="group-add-user"
        />
        <ActionIcon
          variant="light"
          size="md"
          disabled={!adding}
          aria-label="Add to group"
          data-testid="group-add-submit"
          onClick={() => {
            if (!adding) return;
            const user = adding;
            setAdding(null);
            void change(`Could not add ${user} to ${group.name}`, () => api.addToGroup(group.name, user));
          }}
        >
          +
        </ActionIcon>
      </Group>
    </Card>
  );
}
