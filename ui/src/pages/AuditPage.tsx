// The audit log of the selected environment, newest first: who did what, when, from where, and
// whether it was done. Each entry reads as the sentence the API makes of it ("ann scaled
// WEB/web to 4"), with the request itself in its tooltip. A virtualised grid, so thousands of
// entries scroll smoothly; more are fetched on demand up to the API's limit.

import { Badge, Button, Card, Group, Stack, Text, Title } from "@mantine/core";
import { useVirtualizer } from "@tanstack/react-virtual";
import { memo, useRef, useState } from "react";
import { api, type AuditEntry } from "../api.ts";
import { EmptyState, ErrorBanner, ListSkeleton } from "../components/common.tsx";
import { FilterInput, NoMatch, useFilter } from "../components/Filter.tsx";
import { useLive, useLiveState } from "../live.tsx";

const PAGE = 200;
/** The most `GET /v1/audit` returns in one request. */
const MAX = 10_000;
const ROW_HEIGHT = 40;
/** The entry as a sentence; from a control plane too old to make one, who, method and path. */
const summary = (e: AuditEntry) => e.summary ?? `${e.user ?? "no valid credential"}: ${e.method} ${e.path}`;

export function AuditPage() {
  const { env } = useLiveState();
  const [limit, setLimit] = useState(PAGE);
  // Every change in the environment writes an entry: refetch when the stream announces one.
  const audit = useLive(`audit/${limit}`, ["hosts", "stacks", "services", "containers", "environments"], (s) => api.audit(limit, s));
  const entries = audit.data;
  const more = entries !== undefined && entries.length >= limit && limit < MAX;
  const filter = useFilter(entries, (e) => [summary(e), e.user, e.key, e.client, e.remote, e.method, e.path].filter(Boolean).join(" "));
  return (
    <Stack gap="md" h="calc(100vh - 56px - 2 * var(--mantine-spacing-md))">
      <Group justify="space-between">
        <Title order={2}>Audit log of {env}</Title>
        <Button variant="default" size="xs" onClick={audit.reload} data-testid="audit-refresh">
          Refresh
        </Button>
      </Group>
      {audit.error && <ErrorBanner error={audit.error} what={`the audit log of ${env}`} onRetry={audit.reload} />}
      {audit.loading && !entries && <ListSkeleton rows={4} height={36} />}
      {entries && entries.length === 0 && <EmptyState title="Nothing recorded yet" testId="audit-empty">Every change made in this environment, and every refused attempt, is listed here.</EmptyState>}
      {entries && entries.length > 0 && (
        <FilterInput value={filter.query} onChange={filter.setQuery} placeholder="Filter by who, what or address" testId="audit-filter" count={filter.shown.length} total={entries.length} />
      )}
      {entries && entries.length > 0 && filter.shown.length === 0 && <NoMatch query={filter.query} />}
      {filter.shown.length > 0 && <AuditTable entries={filter.shown} />}
      {entries && (
        <Group justify="space-between">
          <Text size="sm" c="dimmed" data-testid="audit-count">
            {entries.length} most recent entr{entries.length === 1 ? "y" : "ies"}
          </Text>
          {more && (
            <Button variant="light" size="xs" onClick={() => setLimit((l) => Math.min(MAX, l * 5))} data-testid="audit-more">
              Show older entries
            </Button>
          )}
        </Group>
      )}
    </Stack>
  );
}

function AuditTable({ entries }: { entries: AuditEntry[] }) {
  const parent = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({ count: entries.length, getScrollElement: () => parent.current, estimateSize: () => ROW_HEIGHT, overscan: 10 });
  return (
    <Card withBorder padding={0} style={{ flex: 1, minHeight: 0, display: "flex", flexDirection: "column" }}>
      <div className="grid-row grid-head audit-grid">
        <span>When</span>
        <span>What</span>
        <span className="wide-only">Via</span>
        <span className="wide-only">From</span>
        <span>Outcome</span>
      </div>
      <div ref={parent} style={{ flex: 1, minHeight: 0, overflow: "auto" }} data-testid="audit-scroll">
        <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
          {virtual.getVirtualItems().map((item) => (
            <AuditRow key={entries[item.index]!.id} e={entries[item.index]!} top={item.start} />
          ))}
        </div>
      </div>
    </Card>
  );
}

/** 2xx done, 4xx refused, 5xx failed. */
function outcome(status: number): { label: string; color: string } {
  if (status < 400) return { label: "done", color: "green" };
  if (status < 500) return { label: "refused", color: "orange" };
  return { label: "failed", color: "red" };
}

const AuditRow = memo(function AuditRow({ e, top }: { e: AuditEntry; top: number }) {
  const o = outcome(e.status);
  const who = e.user ?? "no valid credential";
  const via = [e.key && `key ${e.key}`, e.client].filter(Boolean).join(", ");
  return (
    <div
      className="grid-row audit-grid"
      data-testid="audit-row"
      data-method={e.method}
      data-path={e.path}
      data-user={e.user ?? ""}
      data-status={e.status}
      style={{ position: "absolute", top: 0, left: 0, right: 0, height: ROW_HEIGHT, transform: `translateY(${top}px)` }}
    >
      <span className="cell" title={e.at}>
        {new Date(e.at).toLocaleString()}
      </span>
      <span className="cell" title={`${summary(e)}\n${e.method} ${e.path}`} data-testid="audit-summary">
        {summary(e)}
      </span>
      <span className="cell wide-only" title={via ? `${who} (${via})` : who}>
        {via || "—"}
      </span>
      <span className="cell wide-only">{e.remote ?? "—"}</span>
      <span className="cell" title={`HTTP ${e.status}`} data-testid="audit-outcome">
        <Badge size="sm" variant="light" color={o.color}>
          {o.label}
        </Badge>
      </span>
    </div>
  );
});
