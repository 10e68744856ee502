// Editing a service, as `corral service upgrade` does: a new image, command, environment or network rolls
// over its containers one at a time (each taken out of load balancers first; the next waits until
// the new one runs). Only what changed is sent; the API's complaint about a field shows under it.

import { Button, Group, Modal, Stack, Text, TextInput, Textarea } from "@mantine/core";
import { useState, type FormEvent } from "react";
import { api, type Service, type ServiceUpgrade } from "../api.ts";
import { shellQuote, splitCommand, splitLines } from "../format.ts";
import { notifyDone, useFormSubmit } from "./common.tsx";
import { NetworkSelect } from "./NetworkMode.tsx";

const FIELDS = ["image", "command", "env", "network"] as const;

export function ServiceUpgradeModal({ service, opened, onClose }: { service: Service; opened: boolean; onClose: () => void }) {
  return (
    <Modal opened={opened} onClose={onClose} title={`Edit ${service.stack}/${service.name}`} size="lg" data-testid="upgrade-dialog">
      {/* Mounted afresh on each opening, so the form starts from the service as it is now. */}
      {opened && <UpgradeForm service={service} onDone={onClose} />}
    </Modal>
  );
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function UpgradeForm({ service: s, onDone }: { service: Service; onDone: () => void }) {
  const [image, setImage] = useState(s.image);
  const [command, setCommand] = useState(s.command.map(shellQuote).join(" "));
  const [env, setEnv] = useState(s.env.join("\n"));
  const [network, setNetwork] = useState(s.network ?? "managed");
  const [commandError, setCommandError] = useState<string | null>(null);
  const { errors, busy, run } = useFormSubmit(FIELDS, `Could not upgrade ${s.stack}/${s.name}`);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    let argv: string[];
    try {
      argv = splitCommand(command);
      setCommandError(null);
    } catch (err) {
      setCommandError(`${err instanceof Error ? err.message : err}: close the quote or remove it`);
      return;
    }
    const change: ServiceUpgrade = {};
    if (image.trim() !== s.image) change.image = image.trim();
    if (!sameList(argv, s.command)) change.command = argv;
    const vars = splitLines(env);
    if (!sameList(vars, s.env)) change.env = vars;
    if (network !== (s.network ?? "managed")) change.network = network;
    void run(async () => {
      // Nothing changed: the API says so under Image, like any other refusal.
      const upgraded = await api.upgradeService(s.stack, s.name, Object.keys(change).length ? change : { image: s.image });
      notifyDone(`Upgrading ${s.stack}/${s.name} to revision ${upgraded.revision}, one container at a time`);
      onDone();
    });
  };

  return (
    <form onSubmit={submit} data-testid="upgrade-form" noValidate>
      <Stack gap="sm">
        <Text size="sm" c="dimmed">
          Revision {s.revision}. Saving rolls the {s.placed} container{s.placed === 1 ? "" : "s"} onto the new settings one at a time; a container that does not start
          stops the roll.
        </Text>
        <TextInput label="Image" required value={image} onChange={(e) => setImage(e.currentTarget.value)} error={errors.image} data-testid="upgrade-image" />
        <TextInput
          label="Command"
          description="Empty: the image's own command; quote arguments as in a shell"
          value={command}
          onChange={(e) => setCommand(e.currentTarget.value)}
          error={commandError ?? errors.command}
          data-testid="upgrade-command"
        />
        <Textarea
          label="Environment variables"
          description="One KEY=VALUE per line; replaces the whole environment"
          autosize
          minRows={2}
          value={env}
          onChange={(e) => setEnv(e.currentTarget.value)}
          error={errors.env}
          data-testid="upgrade-env"
        />
        <NetworkSelect value={network} onChange={setNetwork} error={errors.network} testId="upgrade-network" />
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            Cancel
          </Button>
          <Button type="submit" loading={busy} data-testid="upgrade-submit">
            Upgrade
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
