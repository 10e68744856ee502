// The create-service and create-load-balancer forms. A validation error from the API names the
// field it is about (`{code, message, field}`) and is shown next to that field; anything else is
// a notification.

import { Button, Checkbox, Group, Modal, NumberInput, Select, Stack, TagsInput, TextInput, Textarea } from "@mantine/core";
import { useState, type FormEvent, type ReactNode } from "react";
import { api, type NewLoadBalancer, type NewService } from "../api.ts";
import { fieldError, notifyDone, notifyError } from "../components/common.tsx";
import { NetworkSelect } from "../components/NetworkMode.tsx";
import { splitCommand, splitLines, splitList } from "../format.ts";

type Errors = Record<string, string | undefined>;

/** Runs `create`, mapping an API error that names one of `fields` onto it. */
function useSubmit(fields: readonly string[], onDone: () => void) {
  const [errors, setErrors] = useState<Errors>({});
  const [busy, setBusy] = useState(false);
  const run = async (what: string, build: () => Promise<unknown>) => {
    setBusy(true);
    setErrors({});
    try {
      await build();
      notifyDone(`Created ${what}`);
      onDone();
    } catch (e) {
      const f = fieldError(e, fields);
      if (f) setErrors({ [f.field]: f.message });
      else notifyError(`Could not create ${what}`, e);
    } finally {
      setBusy(false);
    }
  };
  return { errors, setErrors, busy, run };
}

function FormModal({ opened, onClose, title, children, testId }: { opened: boolean; onClose: () => void; title: string; children: ReactNode; testId: string }) {
  return (
    <Modal opened={opened} onClose={onClose} title={title} size="lg" data-testid={testId}>
      {children}
    </Modal>
  );
}

const SERVICE_FIELDS = ["name", "image", "command", "env", "ports", "constraints", "scale", "pull_policy", "network"] as const;

const PULL_POLICIES = [
  { value: "missing", label: "When the host lacks it (missing)" },
  { value: "always", label: "Before every container is created (always)" },
  { value: "never", label: "Never: the image is on the hosts already (never)" },
];

export function ServiceFormModal({ stack, opened, onClose }: { stack: string; opened: boolean; onClose: () => void }) {
  return (
    <FormModal opened={opened} onClose={onClose} title={`New service in ${stack}`} testId="service-dialog">
      <ServiceForm stack={stack} onDone={onClose} />
    </FormModal>
  );
}

function ServiceForm({ stack, onDone }: { stack: string; onDone: () => void }) {
  const [name, setName] = useState("");
  const [image, setImage] = useState("");
  const [command, setCommand] = useState("");
  const [env, setEnv] = useState("");
  const [ports, setPorts] = useState("");
  const [constraints, setConstraints] = useState<string[]>([]);
  const [scale, setScale] = useState<number | string>(1);
  const [pull, setPull] = useState<string>("missing");
  const [network, setNetwork] = useState<string>("managed");
  const { errors, setErrors, busy, run } = useSubmit(SERVICE_FIELDS, onDone);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    let argv: string[];
    try {
      argv = splitCommand(command);
    } catch (err) {
      setErrors({ command: `${err instanceof Error ? err.message : err}: close the quote or remove it` });
      return;
    }
    const body: NewService = {
      name: name.trim(),
      image: image.trim(),
      command: argv,
      env: splitLines(env),
      ports: splitList(ports),
      constraints,
      scale: typeof scale === "number" ? scale : Number(scale),
      pull_policy: pull,
      network,
    };
    void run(`service ${stack}/${body.name}`, () => api.createService(stack, body));
  };

  return (
    <form onSubmit={submit} data-testid="service-form" noValidate>
      <Stack gap="sm">
        <TextInput label="Name" required placeholder="e.g. web" value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} data-testid="svc-name" />
        <TextInput label="Image" required placeholder="e.g. nginx:1.27" value={image} onChange={(e) => setImage(e.currentTarget.value)} error={errors.image} data-testid="svc-image" />
        <Select
          label="Pull the image"
          description="Hosts pull it from its registry, with progress shown on the service"
          data={PULL_POLICIES}
          value={pull}
          onChange={(v) => setPull(v ?? "missing")}
          allowDeselect={false}
          error={errors.pull_policy}
          data-testid="svc-pull"
        />
        <TextInput
          label="Command"
          description="Overrides the image's command; quote arguments as in a shell"
          placeholder={`e.g. sh -c 'echo hello; exec httpd -f -p 80'`}
          value={command}
          onChange={(e) => setCommand(e.currentTarget.value)}
          error={errors.command}
          data-testid="svc-command"
        />
        <Textarea label="Environment variables" description="One KEY=VALUE per line" autosize minRows={2} value={env} onChange={(e) => setEnv(e.currentTarget.value)} error={errors.env} data-testid="svc-env" />
        <TextInput
          label="Ports"
          description="80 (on the container's IP), 8080:80 (published on the host), 53/udp; separate with commas"
          value={ports}
          onChange={(e) => setPorts(e.currentTarget.value)}
          error={errors.ports}
          data-testid="svc-ports"
        />
        <NetworkSelect
          value={network}
          onChange={(v) => {
            setNetwork(v);
            // A refusal of the mode chosen before says nothing about this one.
            setErrors((e) => ({ ...e, network: undefined }));
          }}
          error={errors.network}
          testId="svc-network"
        />
        <TagsInput label="Constraints" description="host.LABEL=VALUE or host.LABEL!=VALUE; press Enter after each" value={constraints} onChange={setConstraints} error={errors.constraints} data-testid="svc-constraints" />
        <NumberInput label="Scale" description="How many containers to run (0–1000)" value={scale} onChange={setScale} allowDecimal={false} clampBehavior="none" error={errors.scale} data-testid="svc-scale" />
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            Cancel
          </Button>
          <Button type="submit" loading={busy} data-testid="svc-submit">
            Create service
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

const LB_FIELDS = ["name", "ports", "targets", "rules", "constraints", "scale"] as const;

export function LoadBalancerFormModal({ stack, targets, opened, onClose }: { stack: string; targets: string[]; opened: boolean; onClose: () => void }) {
  return (
    <FormModal opened={opened} onClose={onClose} title={`New load balancer in ${stack}`} testId="lb-dialog">
      <LoadBalancerForm stack={stack} suggestions={targets} onDone={onClose} />
    </FormModal>
  );
}

function LoadBalancerForm({ stack, suggestions, onDone }: { stack: string; suggestions: string[]; onDone: () => void }) {
  const [name, setName] = useState("");
  const [ports, setPorts] = useState("");
  const [targets, setTargets] = useState<string[]>([]);
  const [rules, setRules] = useState("");
  const [global, setGlobal] = useState(false);
  const [scale, setScale] = useState<number | string>(1);
  const [constraints, setConstraints] = useState<string[]>([]);
  const { errors, busy, run } = useSubmit(LB_FIELDS, onDone);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const body: NewLoadBalancer = {
      name: name.trim(),
      kind: "load-balancer",
      scale: typeof scale === "number" ? scale : Number(scale),
      constraints,
      lb: { ports: splitList(ports), targets, rules: splitLines(rules), global },
    };
    void run(`load balancer ${stack}/${body.name}`, () => api.createService(stack, body));
  };

  return (
    <form onSubmit={submit} data-testid="lb-form" noValidate>
      <Stack gap="sm">
        <TextInput label="Name" required placeholder="e.g. web-lb" value={name} onChange={(e) => setName(e.currentTarget.value)} error={errors.name} data-testid="lb-name" />
        <TextInput
          label="Ports"
          required
          description="LISTEN:TARGET for HTTP, LISTEN:TARGET/tcp for TCP; separate with commas"
          placeholder="e.g. 8080:80"
          value={ports}
          onChange={(e) => setPorts(e.currentTarget.value)}
          error={errors.ports}
          data-testid="lb-ports"
        />
        <TagsInput
          label="Targets"
          description="STACK/SERVICE receiving requests no rule claims; pick or type, then Enter"
          data={suggestions}
          value={targets}
          onChange={setTargets}
          error={errors.targets}
          data-testid="lb-targets"
        />
        <Textarea
          label="Rules"
          description="One per line: host=NAME,path=/PREFIX -> STACK/SERVICE:PORT"
          autosize
          minRows={2}
          value={rules}
          onChange={(e) => setRules(e.currentTarget.value)}
          error={errors.rules}
          data-testid="lb-rules"
        />
        <Group grow align="flex-start">
          <NumberInput label="Scale" value={scale} onChange={setScale} allowDecimal={false} clampBehavior="none" disabled={global} error={errors.scale} data-testid="lb-scale" />
          <Checkbox mt={32} label="On every eligible host" checked={global} onChange={(e) => setGlobal(e.currentTarget.checked)} />
        </Group>
        <TagsInput label="Constraints" description="host.LABEL=VALUE or host.LABEL!=VALUE" value={constraints} onChange={setConstraints} error={errors.constraints} />
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>
            Cancel
          </Button>
          <Button type="submit" loading={busy} data-testid="lb-submit">
            Create load balancer
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
