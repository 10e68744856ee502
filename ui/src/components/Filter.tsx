// A filter box over a list held in the browser: the list may hold tens of thousands of rows, so
// each row's searchable text is built once per list, the typed text is deferred (typing stays
// responsive while the list re-renders), and matching is a plain substring test.

import { CloseButton, Text, TextInput } from "@mantine/core";
import { useDeferredValue, useMemo, useState } from "react";

/** The rows whose text contains every word typed (case-insensitive), in their order. */
export function useFilter<T>(rows: readonly T[] | undefined, text: (row: T) => string): { query: string; setQuery: (q: string) => void; shown: T[] } {
  const [query, setQuery] = useState("");
  const deferred = useDeferredValue(query);
  // `text` is usually an inline function: the haystack follows the rows only.
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const haystack = useMemo(() => (rows ?? []).map((r) => text(r).toLowerCase()), [rows]);
  const shown = useMemo(() => {
    const all = rows ?? [];
    const words = deferred.toLowerCase().split(/\s+/).filter(Boolean);
    if (words.length === 0) return [...all];
    return all.filter((_, i) => words.every((w) => haystack[i]!.includes(w)));
  }, [rows, haystack, deferred]);
  return { query, setQuery, shown };
}

export function FilterInput({ value, onChange, placeholder, testId, count, total }: {
  value: string;
  onChange: (v: string) => void;
  placeholder: string;
  testId: string;
  /** How many rows match and how many there are, said when filtering. */
  count?: number;
  total?: number;
}) {
  const filtering = value.trim() !== "" && count !== undefined && total !== undefined;
  return (
    <TextInput
      size="sm"
      maw={420}
      placeholder={placeholder}
      aria-label={placeholder}
      value={value}
      onChange={(e) => onChange(e.currentTarget.value)}
      onKeyDown={(e) => e.key === "Escape" && onChange("")}
      data-testid={testId}
      rightSectionWidth={filtering ? 110 : undefined}
      rightSection={
        value ? (
          <span style={{ display: "flex", alignItems: "center", gap: 4, fontSize: 12, color: "var(--mantine-color-dimmed)" }} data-testid={`${testId}-count`}>
            {filtering && `${count} of ${total}`}
            <CloseButton size="sm" aria-label="Clear the filter" onClick={() => onChange("")} />
          </span>
        ) : null
      }
    />
  );
}

/** Said in place of a list whose every row the filter hides. */
export function NoMatch({ query }: { query: string }) {
  return (
    <Text c="dimmed" size="sm" py="md" ta="center" data-testid="filter-no-match">
      Nothing matches “{query.trim()}”.
    </Text>
  );
}
