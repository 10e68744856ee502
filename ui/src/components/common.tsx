import { Alert, Button, Group, Paper, Skeleton, Stack, Text, Title } from "@mantine/core";
import { notifications } from "@mantine/notifications";
import type { ReactNode } from "react";
import { ApiError, ApiUnreachable } from "../api.ts";

/** What failed to load, said plainly, with a retry. */
export function ErrorBanner({ error, onRetry, what }: { error: Error; onRetry?: () => void; what: string }) {
  const unreachable = error instanceof ApiUnreachable;
  return (
    <Alert color="red" title={unreachable ? "The control plane API is unreachable" : `Could not load ${what}`} data-testid="api-error" mb="md">
      <Group justify="space-between" wrap="nowrap" align="flex-start">
        <Text size="sm">{error.message}</Text>
        {onRetry && (
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
