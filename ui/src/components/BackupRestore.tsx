// Backup and restore for administrators, as `corral backup` / `corral restore` do them: a backup
// is a consistent copy taken while everything runs; a restore is checked whole first and either
// brings back exactly the backup or changes nothing. One that would lock the administrator out
// is refused with the reasons, and can then be restored anyway (`?force=true`).

import { Alert, Button, Card, FileInput, Group, Progress, Stack, Text } from "@mantine/core";
import { useState } from "react";
import { ApiError, api, type Progress as Transfer, type RestoreInfo } from "../api.ts";
import { formatBytes } from "../format.ts";
import { notifyDone, notifyError } from "./common.tsx";

export function BackupRestore() {
  return (
    <Card withBorder data-testid="backup-restore">
      <Stack gap="md">
        <div>
          <Text fw={600}>Backup and restore</Text>
          <Text size="sm" c="dimmed">
            The whole control plane: environments, hosts, stacks and services, users and roles, the audit log and history. Hosts keep running meanwhile.
          </Text>
        </div>
        <BackupButton />
        <RestoreForm />
      </Stack>
    </Card>
  );
}

/** Percent of a transfer, or null while its size is unknown. */
function percent(p: Transfer | null): number | null {
  return p && p.total ? Math.min(100, Math.round((p.done / p.total) * 100)) : null;
}

function TransferBar({ progress, testId }: { progress: Transfer | null; testId: string }) {
  if (!progress) return null;
  const pct = percent(progress);
  return (
    <Stack gap={2} data-testid={testId}>
      <Progress value={pct ?? 100} animated={pct === null || pct < 100} />
      <Text size="xs" c="dimmed">
        {formatBytes(progress.done)}
        {progress.total ? ` of ${formatBytes(progress.total)} (${pct} %)` : ""}
      </Text>
    </Stack>
  );
}

function BackupButton() {
  const [progress, setProgress] = useState<Transfer | null>(null);
  const download = async () => {
    setProgress({ done: 0, total: null });
    try {
      const { blob, name } = await api.backup(setProgress);
      // The browser saves it under the API's name (`corral-YYYYMMDD-HHMMSS.db`).
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = name;
      link.click();
      window.setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
      notifyDone(`Backup ${name} (${formatBytes(blob.size)}) downloaded`);
    } catch (e) {
      notifyError("Could not back up", e);
    } finally {
      setProgress(null);
    }
  };
  return (
    <Stack gap="xs">
      <Group>
        <Button variant="light" loading={progress !== null} onClick={() => void download()} data-testid="backup-download">
          Download a backup
        </Button>
      </Group>
      <TransferBar progress={progress} testId="backup-progress" />
    </Stack>
  );
}

function RestoreForm() {
  const [file, setFile] = useState<File | null>(null);
  const [progress, setProgress] = useState<Transfer | null>(null);
  const [lockout, setLockout] = useState<string | null>(null);
  const [refused, setRefused] = useState<string | null>(null);
  const [done, setDone] = useState<RestoreInfo | null>(null);

  const restore = async (force: boolean) => {
    if (!file) return;
    setLockout(null);
    setRefused(null);
    setDone(null);
    setProgress({ done: 0, total: file.size });
    try {
      const info = await api.restore(file, force, setProgress);
      setDone(info);
      setFile(null);
      notifyDone(`Restored ${file.name}`);
      // The backup's users and sessions apply now: one that no longer holds this session signs
      // the UI out at once (a 401 does), rather than at the next click.
      void api.whoami().catch(() => undefined);
    } catch (e) {
      if (e instanceof ApiError && e.code === "restore_would_lock_out") setLockout(e.message);
      else if (e instanceof ApiError && e.code === "bad_backup") setRefused(e.message);
      else notifyError("Could not restore", e);
    } finally {
      setProgress(null);
    }
  };

  return (
    <Stack gap="xs">
      <Group align="flex-end">
        <FileInput
          label="Restore from a backup file"
          description="Replaces everything with the backup's contents; the current state is kept as a safety copy in the data dir"
          placeholder="corral-YYYYMMDD-HHMMSS.db"
          value={file}
          onChange={(f) => {
            setFile(f);
            setLockout(null);
            setRefused(null);
          }}
          clearable
          style={{ flex: 1 }}
          data-testid="restore-file"
        />
        <Button color="red" variant="light" disabled={!file} loading={progress !== null} onClick={() => void restore(false)} data-testid="restore-submit">
          Restore
        </Button>
      </Group>
      <TransferBar progress={progress} testId="restore-progress" />
      {refused && (
        <Alert color="red" title="This file cannot be restored; nothing was changed" data-testid="restore-refused">
          <Text size="sm">{refused}</Text>
        </Alert>
      )}
      {lockout && (
        <Alert color="orange" title="Restoring this backup would lock you out" data-testid="restore-lockout">
          <Stack gap="xs">
            <Text size="sm">{lockout}</Text>
            <Group>
              <Button color="red" size="xs" loading={progress !== null} onClick={() => void restore(true)} data-testid="restore-force">
                Restore anyway
              </Button>
              <Button size="xs" variant="default" onClick={() => setLockout(null)}>
                Cancel
              </Button>
            </Group>
          </Stack>
        </Alert>
      )}
      {done && (
        <Alert color="teal" title="Restored" data-testid="restore-done">
          <Text size="sm">
            The control plane now holds the backup (schema version {done.schema_version}); hosts follow it. What it held before is kept in the data dir as{" "}
            <b>{done.safety_copy}</b> — restore that file to undo.
            {done.join_tokens_replaced.length > 0 &&
              ` Join tokens of ${done.join_tokens_replaced.join(", ")} were sealed by another control plane and have been replaced: use the new join commands for new hosts.`}
          </Text>
        </Alert>
      )}
    </Stack>
  );
}
