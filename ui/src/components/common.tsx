import { Alert, Button, Card, Group, Modal, Paper, Skeleton, Stack, Text, TextInput, Title } from "@mantine/core";
import { notifications } from "@mantine/notifications";
import { useState, type FormEvent, type ReactNode } from "react";
import { ApiError, ApiUnreachable } from "../api.ts";

/** What failed to load, said plainly, with a retry. */
export function ErrorBanner({ error, onRetry, what }: { error: Error; onRetry?: () => void; what: string }) {
  const unreachable = error instanceof ApiUnreachable;
  // A refusal is not a fault to retry: say whose right it is (the API's message names it).
  const forbidden = error instanceof ApiError && error.status === 403;
  const title = unreachable ? "The control plane API is unreachable" : forbidden ? `You may not see ${what}` : `Could not load ${what}`;
  return (
    <Alert color={forbidden ? "orange" : "red"} title={title} data-testid={forbidden ? "api-forbidden" : "api-error"} mb="md">
      <Group justify="space-between" wrap="nowrap" align="flex-start">
        <Text size="sm">{error.message}</Text>
        {onRetry && !forbidden && (
          <Button size="xs" variant="light" color="red" onClick={onRetry}>
            Retry
          </Button>
        )}
      </Group>
    </Alert>
  );
}

/** What to do next when a list is empty. */
export function EmptyState({ title, children, action, testId }: { title: string; children?: ReactNode; action?: ReactNode; testId?: string }) {
  return (
    <Paper withBorder p="xl" radius="md" data-testid={testId}>
      <Stack align="center" gap="xs">
        <Title order={4}>{title}</Title>
        {children && (
          <Text c="dimmed" ta="center" size="sm">
            {children}
          </Text>
        )}
        {action}
      </Stack>
    </Paper>
  );
}

export function ListSkeleton({ rows = 4, height = 72 }: { rows?: number; height?: number }) {
  return (
    <Stack gap="sm" data-testid="loading">
      {Array.from({ length: rows }, (_, i) => (
        <Skeleton key={i} height={height} radius="md" />
      ))}
    </Stack>
  );
}

/** Reports an action's failure as a notification (form fields show their own errors). */
export function notifyError(what: string, e: unknown) {
  const message = e instanceof Error ? e.message : String(e);
  notifications.show({ color: "red", title: what, message, autoClose: 8000 });
}

export function notifyDone(message: string) {
  notifications.show({ color: "teal", message, autoClose: 3000 });
}

/** Splits an API error into a message for a named form field, or null when it names none of `fields`. */
export function fieldError(e: unknown, fields: readonly string[]): { field: string; message: string } | null {
  if (e instanceof ApiError && e.field && fields.includes(e.field)) return { field: e.field, message: e.message };
  return null;
}

/**
 * Runs a form's API call, busy meanwhile. An API error that names one of `fields`, or whose HTTP
 * status `statusField` maps to a field (a taken name, an unknown one), shows under that field;
 * anything else is a `failure` notification.
 */
export function useFormSubmit(fields: readonly string[], failure: string, statusField: Record<number, string> = {}) {
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const run = async (action: () => Promise<void>) => {
    setBusy(true);
    setErrors({});
    try {
      await action();
    } catch (err) {
      const f = fieldError(err, fields);
      const byStatus = err instanceof ApiError ? statusField[err.status] : undefined;
      if (f) setErrors({ [f.field]: f.message });
      else if (byStatus && err instanceof ApiError) setErrors({ [byStatus]: err.message });
      else notifyError(failure, err);
    } finally {
      setBusy(false);
    }
  };
  return { errors, busy, run };
}

/**
 * Asks before an action that cannot be undone; `action` runs on confirming, and the dialog closes
 * when it succeeds (a failure is a notification, and the dialog stays for another try or Cancel).
 */
export function ConfirmDialog({
  title,
  children,
  confirm,
  opened,
  onClose,
  action,
  failure,
  testId,
}: {
  title: string;
  children: ReactNode;
  confirm: string;
  opened: boolean;
  onClose: () => void;
  action: () => Promise<unknown>;
  failure: string;
  testId: string;
}) {
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    try {
      await action();
      onClose();
    } catch (err) {
      notifyError(failure, err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal opened={opened} onClose={onClose} title={title}>
      <Text size="sm">{children}</Text>
      <Group justify="flex-end" mt="lg">
        <Button variant="default" onClick={onClose}>
          Cancel
        </Button>
        <Button color="red" loading={busy} onClick={() => void run()} data-testid={testId}>
          {confirm}
        </Button>
      </Group>
    </Modal>
  );
}

/**
 * A one-field form that creates something by name: the API's complaint about the name (invalid
 * or taken) shows under the field, anything else is a notification. The field empties on success.
 */
export function NameForm({
  label,
  placeholder,
  submit,
  create,
  failure,
  testIds,
}: {
  label: string;
  placeholder: string;
  submit: string;
  create: (name: string) => Promise<unknown>;
  failure: string;
  testIds: { form: string; input: string; submit: string };
}) {
  const [name, setName] = useState("");
  const { errors, busy, run } = useFormSubmit(["name"], failure, { 409: "name" });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      await create(name.trim());
      setName("");
    });
  };
  return (
    <Card withBorder>
      <form onSubmit={onSubmit} data-testid={testIds.form}>
        <Group align="flex-start">
          <TextInput
            label={label}
            placeholder={placeholder}
            value={name}
            onChange={(e) => setName(e.currentTarget.value)}
            error={errors.name}
            name="name"
            style={{ flex: 1 }}
            maw={420}
            data-testid={testIds.input}
          />
          <Button type="submit" loading={busy} mt={25} data-testid={testIds.submit}>
            {submit}
          </Button>
        </Group>
      </form>
    </Card>
  );
}
