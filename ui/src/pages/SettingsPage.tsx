import { Alert, Button, Card, Code, CopyButton, Group, Input, NumberInput, SegmentedControl, Skeleton, Stack, Text, Title } from "@mantine/core";
import { useEffect, useState, type FormEvent } from "react";
import { api, desktopAgentUrl, desktopApi, hasDesktopSettings, inDesktop, type DesktopSettings, type OnClose } from "../api.ts";
import { notifyDone } from "../components/common.tsx";
import { useLive } from "../live.tsx";

export function SettingsPage() {
  return (
    <Stack gap="md" maw={720}>
      <Title order={2}>Settings</Title>
      <AgentEndpoint />
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

/** Where hosts connect when they join: the desktop knows its LAN URL; otherwise the API says it. */
function AgentEndpoint() {
  // The join command needs a role that may add hosts; only ask for it when there is no other source.
  const join = useLive("join-command", ["environments"], (s) => (desktopAgentUrl ? Promise.resolve(null) : api.joinCommand(s)));
  const url = desktopAgentUrl ?? join.data?.server_url;
  return (
    <Card withBorder>
      <Stack gap="xs">
        <Text fw={600}>Agent endpoint</Text>
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
          </Group>
        ) : join.error ? (
          <Text size="sm" c="red" data-testid="agent-url-error">
            {join.error.message}
          </Text>
        ) : (
          <Skeleton height={24} width={280} />
        )}
      </Stack>
    </Card>
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
