// Who has which role in the selected environment: owners and administrators give, change and
// take roles here (the API refuses anyone else).

import { Autocomplete, Badge, Button, Card, Group, SegmentedControl, Select, Stack, Table, Text, Title } from "@mantine/core";
import { useState, type FormEvent } from "react";
import { ENV_ROLES, api, type EnvRole, type MemberKind, type Membership } from "../api.ts";
import { ConfirmDialog, EmptyState, ErrorBanner, ListSkeleton, notifyDone, notifyError, useFormSubmit } from "../components/common.tsx";
import { useLive, useLiveState } from "../live.tsx";
import { useEnvRights } from "../session.tsx";

const ROLE_HELP: Record<EnvRole, string> = {
  owner: "everything here, members and the audit log included",
  member: "stacks, services and hosts",
  restricted: "stacks and services, not hosts",
  "read-only": "sees everything, changes nothing",
};
const ROLE_OPTIONS = ENV_ROLES.map((r) => ({ value: r, label: r }));

export function MembersPage() {
  const { env } = useLiveState();
  const members = useLive("members", [], (s) => api.members(s));
  const [removing, setRemoving] = useState<Membership | null>(null);
  // Everyone who sees the environment may read its members; owners and admins change them.
  const { admin, manageEnv } = useEnvRights();

  const changeRole = async (m: Membership, role: EnvRole) => {
    try {
      // Giving a role replaces the one it had, in one step.
      await api.setMember(m.kind, m.name, role);
      notifyDone(`${m.name} is now ${role} in ${env}`);
      members.reload();
    } catch (err) {
      notifyError(`Could not change the role of ${m.name}`, err);
    }
  };

  return (
    <Stack gap="md">
      <Title order={2}>Members of {env}</Title>
      <Text size="sm" c="dimmed" maw={760}>
        A role applies in this environment only. {ENV_ROLES.map((r) => `${r}: ${ROLE_HELP[r]}`).join("; ")}. Administrators need no role.
      </Text>
      {manageEnv && !members.error && <AddMemberForm suggest={admin} onAdded={members.reload} />}
      {members.error && <ErrorBanner error={members.error} what={`the members of ${env}`} onRetry={members.reload} />}
      {members.loading && <ListSkeleton rows={2} height={40} />}
      {members.data && members.data.length === 0 && (
        <EmptyState title="No members yet" testId="members-empty">
          Only administrators see this environment. Give a user or group a role above.
        </EmptyState>
      )}
      {members.data && members.data.length > 0 && (
        <Card withBorder padding={0}>
          <Table data-testid="members-table">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Kind</Table.Th>
                <Table.Th>Role</Table.Th>
                <Table.Th />
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {members.data.map((m) => (
                <Table.Tr key={`${m.kind}:${m.name}`} data-testid="member-row" data-member={`${m.kind}:${m.name}`} data-role={m.role}>
                  <Table.Td>
                    <Text fw={500}>{m.name}</Text>
                  </Table.Td>
                  <Table.Td>
                    <Badge variant="outline" color={m.kind === "group" ? "blue" : "gray"}>
                      {m.kind}
                    </Badge>
                  </Table.Td>
                  <Table.Td>
                    <Select
                      aria-label={`Role of ${m.name}`}
                      data={ROLE_OPTIONS}
                      value={m.role}
                      allowDeselect={false}
                      disabled={!manageEnv}
                      onChange={(v) => v && v !== m.role && void changeRole(m, v as EnvRole)}
                      w={150}
                      size="xs"
                      comboboxProps={{ withinPortal: true }}
                      data-testid="member-role"
                    />
                  </Table.Td>
                  <Table.Td>
                    <Group justify="flex-end">
                      {manageEnv && (
                        <Button size="xs" variant="subtle" color="red" onClick={() => setRemoving(m)} data-testid="remove-member">
                          Remove
                        </Button>
                      )}
                    </Group>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Card>
      )}
      <ConfirmDialog
        title={`Take ${removing?.name ?? ""}'s role in ${env}?`}
        confirm="Remove"
        opened={removing !== null}
        onClose={() => setRemoving(null)}
        failure={`Could not remove ${removing?.name ?? "the member"}`}
        testId="confirm-remove-member"
        action={async () => {
          if (!removing) return;
          await api.removeMember(removing.kind, removing.name);
          notifyDone(`${removing.name} has no role of its own in ${env} any more`);
          members.reload();
        }}
      >
        {removing?.kind === "group" ? "Its users keep only the roles they have of their own or through other groups." : "They keep any role their groups give them here."}
      </ConfirmDialog>
    </Stack>
  );
}

/** Gives a user or a group a role; administrators get the names to pick from. */
function AddMemberForm({ suggest, onAdded }: { suggest: boolean; onAdded: () => void }) {
  const [kind, setKind] = useState<MemberKind>("user");
  const [name, setName] = useState("");
  const [role, setRole] = useState<EnvRole>("member");
  // An unknown user or group (404) is about the name typed.
  const { errors, busy, run } = useFormSubmit(["name", "role"], "Could not give the role", { 404: "name" });
  // Only administrators may list users and groups; owners type the name.
  const names = useLive(`member-names/${suggest}`, [], async (s) => {
    if (!suggest) return { user: [], group: [] };
    const [users, groups] = await Promise.all([api.users(s), api.groups(s)]);
    return { user: users.map((u) => u.name), group: groups.map((g) => g.name) };
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const m = await api.setMember(kind, name.trim(), role);
      setName("");
      notifyDone(`${m.name} is ${m.role} in ${m.environment}`);
      onAdded();
    });
  };
  return (
    <Card withBorder>
      <form onSubmit={submit} data-testid="add-member-form">
        <Group align="flex-start">
          <SegmentedControl
            value={kind}
            onChange={(v) => setKind(v as MemberKind)}
            data={[
              { value: "user", label: "User" },
              { value: "group", label: "Group" },
            ]}
            mt={25}
            data-testid="member-kind"
          />
          <Autocomplete
            label={kind === "user" ? "User" : "Group"}
            placeholder={kind === "user" ? "e.g. ann" : "e.g. developers"}
            data={names.data?.[kind] ?? []}
            value={name}
            onChange={setName}
            error={errors.name}
            w={240}
            comboboxProps={{ withinPortal: true }}
            data-testid="member-name"
          />
          <Select label="Role" data={ROLE_OPTIONS} value={role} allowDeselect={false} onChange={(v) => v && setRole(v as EnvRole)} error={errors.role} w={160} comboboxProps={{ withinPortal: true }} data-testid="member-new-role" />
          <Button type="submit" loading={busy} mt={25} data-testid="add-member">
            Give role
          </Button>
        </Group>
      </form>
    </Card>
  );
}
