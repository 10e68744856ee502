// What can be done to one container, as `corral container restart|stop|start|rm` does it: each
// asks the control plane, which carries it to the container's host in its desired set (a stopped
// container stays stopped across reconnects and agent restarts). The page follows the outcome
// through the event stream.

import { Button, Group, Tooltip } from "@mantine/core";
import { useState } from "react";
import { api, type Container } from "../api.ts";
import { useEnvRights } from "../session.tsx";
import { ConfirmDialog, notifyDone, notifyError } from "./common.tsx";

type Action = "restart" | "stop" | "start";

const DONE: Record<Action, string> = { restart: "Restarting", stop: "Stopping", start: "Starting" };

export function ContainerActions({ c }: { c: Container }) {
  const [busy, setBusy] = useState<Action | null>(null);
  const [removing, setRemoving] = useState(false);
  const readOnly = !useEnvRights().change;
  const hostDown = c.host_state !== "active";
  const act = async (action: Action) => {
    setBusy(action);
    try {
      const call = { restart: api.restartContainer, stop: api.stopContainer, start: api.startContainer }[action];
      await call(c.name);
      notifyDone(`${DONE[action]} ${c.name} on ${c.host}`);
    } catch (e) {
      notifyError(`Could not ${action} ${c.name}`, e);
    } finally {
      setBusy(null);
    }
  };
  return (
    <Group gap="xs" data-testid="container-actions">
      <Tooltip label={hostDown ? `Host ${c.host} is disconnected` : "Stop and start this container again, in place"}>
        <Button size="xs" variant="light" disabled={readOnly || hostDown || busy !== null} loading={busy === "restart"} onClick={() => void act("restart")} data-testid="container-restart">
          Restart
        </Button>
      </Tooltip>
      {c.stopped ? (
        <Button size="xs" variant="light" color="teal" disabled={readOnly || busy !== null} loading={busy === "start"} onClick={() => void act("start")} data-testid="container-start">
          Start
        </Button>
      ) : (
        <Tooltip label="Keep it stopped (not replaced) until started again">
          <Button size="xs" variant="light" color="gray" disabled={readOnly || busy !== null} loading={busy === "stop"} onClick={() => void act("stop")} data-testid="container-stop">
            Stop
          </Button>
        </Tooltip>
      )}
      <Button size="xs" variant="subtle" color="red" disabled={readOnly} onClick={() => setRemoving(true)} data-testid="container-remove">
        Remove…
      </Button>
      <ConfirmDialog
        title={`Remove ${c.name}?`}
        confirm="Remove container"
        opened={removing}
        onClose={() => setRemoving(false)}
        action={async () => {
          await api.removeContainer(c.name);
          notifyDone(`Removed ${c.name}: ${c.stack}/${c.service} starts a replacement`);
        }}
        failure={`Could not remove ${c.name}`}
        testId="confirm-container-remove"
      >
        The container is removed from {c.host}. Its service keeps its scale, so a new {c.name} starts at once, on another host when one can take it.
      </ConfirmDialog>
    </Group>
  );
}
