import { Alert, Badge, Button, Card, Code, CopyButton, Group, Input, NumberInput, SegmentedControl, Skeleton, Stack, Text, TextInput, Title } from "@mantine/core";
import { useEffect, useState, type FormEvent } from "react";
import { api, desktopAgentUrl, desktopApi, hasDesktopSettings, inDesktop, type DesktopSettings, type OnClose, type Settings } from "../api.ts";
import { BackupRestore } from "../components/BackupRestore.tsx";
import { notifyDone, useFormSubmit } from "../components/common.tsx";
import { useLive } from "../live.tsx";
import { useSession } from "../session.tsx";

export function SettingsPage() {
  const { who } = useSession();
  return (
    <Stack gap="md" maw={720}>
      <Title order={2}>Settings</Title>
      <AgentEndpoint />
      {(who === null || who.admin) && <BackupRestore />}
      {hasDesktopSettings ? (
        <DesktopSettingsCard />
      ) : (
        inDesktop && (
          <Alert color="yellow" data-testid="desktop-settings-unavailable">
            This window cannot reach the desktop app's settings; edit its settings file instead (see the desktop documentation).
          </Alert>
        )
      )}
    </Stack>
  );
}

/** Where hosts connect when they join: the URL join commands name, which administrators may set. */
function AgentEndpoint() {
  const { who } = useSession();
  const admin = who === null || who.admin;
  const settings = useLive("settings", ["environments"], (s) => api.settings(s));
  const [editing, setEditing] = useState(false);
  // The desktop told the window its LAN URL at start: shown if the API cannot say.
  const url = settings.data?.agent_url ?? (settings.error ? desktopAgentUrl : undefined);
  return (
    <Card withBorder data-testid="agent-endpoint">
      <Stack gap="xs">
        <Group justify="space-between">
          <Text fw={600}>Agent endpoint</Text>
          {settings.data && <Badge variant="light" color={SOURCE[settings.data.agent_url_source].color} data-testid="agent-url-source">{SOURCE[settings.data.agent_url_source].label}</Badge>}
        </Group>
        <Text size="sm" c="dimmed">
          The URL hosts connect to when they join (it is part of the join command under Hosts → Add Host).
        </Text>
        {url ? (
          <Group gap="sm" wrap="nowrap">
            <Code data-testid="agent-url" style={{ fontSize: 14 }}>
              {url}
            </Code>
            <CopyButton value={url}>
              {({ copied, copy }) => (
                <Button size="xs" variant="light" onClick={copy}>
                  {copied ? "Copied" : "Copy"}
                </Button>
              )}
            </CopyButton>
            {admin && settings.data && !editing && (
              <Button size="xs" variant="subtle" onClick={() => setEditing(true)} data-testid="agent-url-edit">
                Change…
              </Button>
            )}
          </Group>
        ) : settings.error ? (
          <Text size="sm" c="red" data-testid="agent-url-error">
            {settings.error.message}
          </Text>
        ) : (
          <Skeleton height={24} width={280} />
        )}
        {settings.data?.notes.map((note) => (
          <Alert key={note} color="yellow" p="xs" data-testid="agent-url-note">
            <Text size="sm">{note}</Text>
          </Alert>
        ))}
        {editing && settings.data && <AdvertiseUrlForm current={settings.data} onDone={() => setEditing(false)} reload={settings.reload} />}
      </Stack>
    </Card>
  );
}

const SOURCE: Record<Settings["agent_url_source"], { label: string; color: string }> = {
  "command-line": { label: "from --advertise-url", color: "grape" },
  settings: { label: "set here", color: "blue" },
  detected: { label: "this machine's address", color: "gray" },
};

/** Sets the URL hosts join at (admins); empty goes back to the detected one. */
function AdvertiseUrlForm({ current, onDone, reload }: { current: Settings; onDone: () => void; reload: () => void }) {
  const [value, setValue] = useState(current.advertise_url ?? "");
  const { errors, busy, run } = useFormSubmit(["advertise_url"], "Could not change the agent endpoint");
  const save = (url: string | null) =>
    run(async () => {
      const next = await api.setAdvertiseUrl(url);
      notifyDone(next.advertise_url ? `Hosts join at ${next.agent_url} from now on` : `Hosts join at ${next.agent_url}, this machine's address`);
      reload();
      onDone();
    });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void save(value.trim() === "" ? null : value.trim());
  };
  return (
    <form onSubmit={submit} data-testid="advertise-url-form" noValidate>
      <Stack gap="xs">
        <TextInput
          label="URL hosts reach this control plane at"
          description={`Scheme, host and port, e.g. https://corral.example.lan:7070. Empty: this machine's address (${current.detected_url}).`}
          placeholder={current.detected_url}
          value={value}
          onChange={(e) => setValue(e.currentTarget.value)}
          error={errors.advertise_url}
          data-testid="advertise-url"
        />
        <Group gap="xs">
          <Button type="submit" size="xs" loading={busy} data-testid="advertise-url-save">
            Save
          </Button>
          {current.advertise_url && (
            <Button size="xs" variant="light" color="gray" disabled={busy} onClick={() => void save(null)} data-testid="advertise-url-reset">
              Use this machine's address
            </Button>
          )}
          <Button size="xs" variant="default" disabled={busy} onClick={onDone}>
            Cancel
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

const ON_CLOSE: { value: OnClose; label: string }[] = [
  { value: "ask", label: "Ask" },
  { value: "tray", label: "Keep running in the tray" },
  { value: "stop", label: "Stop Corral" },
];

/** The desktop app's own settings, through its `get_settings` / `set_settings` commands. */
function DesktopSettingsCard() {
  const [settings, setSettings] = useState<DesktopSettings | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [port, setPort] = useState<string | number>("");
  const [portError, setPortError] = useState<string | null>(null);
  const [closeError, setCloseError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    desktopApi
      .settings()
      .then((s) => {
        setSettings(s);
        setPort(s.agent_port);
      })
      .catch((e: unknown) => setLoadError(e instanceof Error ? e.message : String(e)));
  }, []);

  const savePort = async (e: FormEvent) => {
    e.preventDefault();
    const n = typeof port === "number" ? port : Number(port);
    // The command takes a 16-bit number: anything else would fail as a malformed call rather
    // than with the app's own message, so it is caught here; the app checks the rest.
    if (port === "" || !Number.isInteger(n) || n < 0 || n > 65535) {
      setPortError(`agent port ${String(port) || "(empty)"}: it must be a whole number between 1 and 65535`);
      return;
    }
    setBusy(true);
    setPortError(null);
    try {
      const s = await desktopApi.changeSettings({ agent_port: n });
      setSettings(s);
      setPort(s.agent_port);
      notifyDone(s.restart_needed ? `Agent port ${s.agent_port} saved: it applies at the next start` : `Agent port ${s.agent_port} saved`);
    } catch (err) {
      setPortError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const saveOnClose = async (value: string) => {
    setCloseError(null);
    try {
      setSettings(await desktopApi.changeSettings({ on_close: value as OnClose }));
    } catch (err) {
      setCloseError(err instanceof Error ? err.message : String(err));
    }
  };

  if (loadError) {
    return (
      <Alert color="red" title="Could not read the desktop settings" data-testid="desktop-settings-error">
        {loadError}
      </Alert>
    );
  }
  if (!settings) return <Skeleton height={160} radius="md" />;
  return (
    <Card withBorder data-testid="desktop-settings">
      <Stack gap="lg">
        <form onSubmit={savePort}>
          <Group align="flex-start">
            <NumberInput
              label="Agent port"
              description={`Agents and other machines connect here; now ${settings.listening_port}`}
              min={1}
              max={65535}
              allowDecimal={false}
              clampBehavior="none"
              value={port}
              onChange={setPort}
              error={portError}
              w={320}
              data-testid="agent-port"
            />
            <Button type="submit" loading={busy} mt={46} data-testid="save-agent-port">
              Save
            </Button>
          </Group>
          {settings.restart_needed && (
            <Alert color="yellow" mt="sm" data-testid="restart-needed">
              Port {settings.agent_port} applies at the next start of Corral; until then it listens on {settings.listening_port}.
            </Alert>
          )}
        </form>
        <Input.Wrapper label="When the window closes" error={closeError}>
          <SegmentedControl
            display="flex"
            w="fit-content"
            mt={4}
            data={ON_CLOSE}
            value={settings.on_close}
            onChange={(v) => void saveOnClose(v)}
            data-testid="on-close"
          />
        </Input.Wrapper>
      </Stack>
    </Card>
  );
}
