// The image registries of the selected environment: where images are pulled from, with a login
// (its password kept encrypted and never shown again) and a private CA that every host installs.
// Members and owners add and remove them; everyone who sees the environment sees the list.

import { Badge, Button, Card, FileButton, Group, PasswordInput, Stack, Table, Text, TextInput, Textarea, Title } from "@mantine/core";
import { useState, type FormEvent } from "react";
import { api, type Registry, type RegistryPassword } from "../api.ts";
import { ConfirmDialog, EmptyState, ErrorBanner, ListSkeleton, notifyDone, useFormSubmit } from "../components/common.tsx";
import { useLive, useLiveState } from "../live.tsx";
import { useEnvRights } from "../session.tsx";

const PASSWORD_BADGE: Record<RegistryPassword, { label: string; color: string }> = {
  set: { label: "set", color: "teal" },
  none: { label: "no login", color: "gray" },
  // Sealed with another control plane's key (a backup restored here): pulls go without it.
  must_be_set_again: { label: "must be set again", color: "red" },
};

export function RegistriesPage() {
  const { env } = useLiveState();
  // Registry changes are announced with the environment's lists; services give the counts.
  const registries = useLive("registries", ["services"], (s) => api.registries(s));
  const [removing, setRemoving] = useState<Registry | null>(null);
  const [editing, setEditing] = useState<Registry | null>(null);
  const { addHosts: manage } = useEnvRights();

  return (
    <Stack gap="md">
      <Title order={2}>Registries of {env}</Title>
      <Text size="sm" c="dimmed" maw={760}>
        Images are named as Docker names them: <code>nginx:1.27</code> comes from Docker Hub (<code>docker.io</code>),{" "}
        <code>registry.example:5000/team/app</code> from <code>registry.example:5000</code>. A login is sent only to the hosts that run an
        image from its registry; a CA is installed by every host of the environment for its Docker engine.
      </Text>
      {manage && !registries.error && <RegistryForm key={editing?.host ?? "new"} editing={editing} onSaved={() => (setEditing(null), registries.reload())} />}
      {registries.error && <ErrorBanner error={registries.error} what={`the registries of ${env}`} onRetry={registries.reload} />}
      {registries.loading && <ListSkeleton rows={2} height={40} />}
      {registries.data && registries.data.length === 0 && (
        <EmptyState title="No registries yet" testId="registries-empty">
          Public images need none. Add a registry for private images, or for one whose certificate comes from your own CA.
        </EmptyState>
      )}
      {registries.data && registries.data.length > 0 && (
        <Card withBorder padding={0}>
          <Table data-testid="registries-table">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Registry</Table.Th>
                <Table.Th>Login</Table.Th>
                <Table.Th>Password</Table.Th>
                <Table.Th>CA</Table.Th>
                <Table.Th>Services</Table.Th>
                <Table.Th />
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {registries.data.map((r) => (
                <Table.Tr key={r.host} data-testid="registry-row" data-registry={r.host} data-password={r.password}>
                  <Table.Td>
                    <Text fw={500} ff="monospace">
                      {r.host}
                    </Text>
                  </Table.Td>
                  <Table.Td>{r.username ?? "—"}</Table.Td>
                  <Table.Td>
                    <Badge variant="light" color={PASSWORD_BADGE[r.password].color} data-testid="registry-password">
                      {PASSWORD_BADGE[r.password].label}
                    </Badge>
                  </Table.Td>
                  <Table.Td>{r.ca_pem ? "installed on every host" : "—"}</Table.Td>
                  <Table.Td>{r.services}</Table.Td>
                  <Table.Td>
                    {manage && (
                      <Group justify="flex-end" gap="xs" wrap="nowrap">
                        <Button size="xs" variant="subtle" onClick={() => setEditing(r)} data-testid="edit-registry">
                          {r.password === "must_be_set_again" ? "Set password" : "Change"}
                        </Button>
                        <Button size="xs" variant="subtle" color="red" onClick={() => setRemoving(r)} data-testid="remove-registry">
                          Remove
                        </Button>
                      </Group>
                    )}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Card>
      )}
      <ConfirmDialog
        title={`Remove registry ${removing?.host ?? ""}?`}
        confirm="Remove"
        opened={removing !== null}
        onClose={() => setRemoving(null)}
        failure={`Could not remove ${removing?.host ?? "the registry"}`}
        testId="confirm-remove-registry"
        action={async () => {
          if (!removing) return;
          await api.removeRegistry(removing.host);
          notifyDone(`Registry ${removing.host} removed`);
          registries.reload();
        }}
      >
        Pulls from it go without a login from now on, and the hosts remove the CA they installed for it. Running containers keep running.
      </ConfirmDialog>
    </Stack>
  );
}

/** Adds a registry, or replaces one's login and CA (both are given again: the password is never shown). */
function RegistryForm({ editing, onSaved }: { editing: Registry | null; onSaved: () => void }) {
  const [host, setHost] = useState(editing?.host ?? "");
  const [username, setUsername] = useState(editing?.username ?? "");
  const [password, setPassword] = useState("");
  const [ca, setCa] = useState(editing?.ca_pem ?? "");
  const { errors, busy, run } = useFormSubmit(["host", "username", "password", "ca_pem"], "Could not save the registry");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const login = username.trim() ? { username: username.trim(), password } : {};
      const r = await api.putRegistry(host.trim(), { ...login, ...(ca.trim() ? { ca_pem: ca } : {}) });
      setPassword("");
      notifyDone(`Registry ${r.host} saved${r.username ? ` with login ${r.username}` : ""}`);
      onSaved();
    });
  };
  return (
    <Card withBorder>
      <form onSubmit={submit} data-testid="registry-form">
        <Stack gap="xs">
          <Group align="flex-start" wrap="wrap">
            <TextInput
              label="Registry"
              description="HOST or HOST:PORT"
              placeholder="registry.example:5000"
              value={host}
              onChange={(e) => setHost(e.currentTarget.value)}
              error={errors.host}
              readOnly={editing !== null}
              w={240}
              required
              data-testid="registry-host"
            />
            <TextInput
              label="User"
              description="Leave empty for no login"
              value={username}
              onChange={(e) => setUsername(e.currentTarget.value)}
              error={errors.username}
              w={180}
              autoComplete="off"
              data-testid="registry-user"
            />
            <PasswordInput
              label="Password"
              description="Kept encrypted, never shown again"
              value={password}
              onChange={(e) => setPassword(e.currentTarget.value)}
              error={errors.password}
              disabled={!username.trim()}
              w={220}
              autoComplete="new-password"
              data-testid="registry-password-input"
            />
          </Group>
          <Textarea
            label="CA certificate (PEM)"
            description="Only when the registry's certificate comes from your own CA"
            placeholder="-----BEGIN CERTIFICATE-----"
            value={ca}
            onChange={(e) => setCa(e.currentTarget.value)}
            error={errors.ca_pem}
            autosize
            minRows={2}
            maxRows={6}
            styles={{ input: { fontFamily: "monospace", fontSize: 12 } }}
            data-testid="registry-ca"
          />
          <Group>
            <FileButton onChange={(file) => void file?.text().then(setCa)} accept=".crt,.pem,.cer">
              {(props) => (
                <Button {...props} variant="default" size="xs">
                  Load CA file…
                </Button>
              )}
            </FileButton>
            <Button type="submit" loading={busy} data-testid="save-registry">
              {editing ? "Save" : "Add registry"}
            </Button>
          </Group>
        </Stack>
      </form>
    </Card>
  );
}
