// A service's scale: − and + buttons around a number the user may also type. What is sent is
// the target the user asked for, never the shown value ± 1: the list refetches after each change
// and lags behind fast clicks, so clicks count from the last target asked for. At most one
// request is in flight; when it returns, the latest target (if it moved meanwhile) goes next, so
// the service ends at exactly what the user asked for last.

import { ActionIcon, Group, TextInput, Tooltip } from "@mantine/core";
import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import { api } from "../api.ts";
import { notifyError } from "./common.tsx";

/** Clicks within this time go out as one request. */
const SETTLE_MS = 250;
/** How long after our last change a different value from the list is still our change's echo. */
const ECHO_MS = 1500;

export function ScaleControl({ stack, service, scale, disabled }: { stack: string; service: string; scale: number; disabled: boolean }) {
  // The target the user asked for, shown until the list says the service has it.
  const [target, setTarget] = useState<number | null>(null);
  // What is being typed, until Enter or leaving the field.
  const [draft, setDraft] = useState<string | null>(null);
  const wanted = useRef<number | null>(null);
  const inFlight = useRef(false);
  const timer = useRef<number | undefined>(undefined);
  const lastDone = useRef(0);

  useEffect(() => () => window.clearTimeout(timer.current), []);

  // The list caught up with the target, or someone else changed the scale since: follow it.
  useEffect(() => {
    if (wanted.current === null || inFlight.current || timer.current !== undefined) return;
    if (scale === wanted.current || Date.now() - lastDone.current > ECHO_MS) {
      wanted.current = null;
      setTarget(null);
    }
  }, [scale]);

  const send = async () => {
    timer.current = undefined;
    if (inFlight.current || wanted.current === null) return;
    const to = wanted.current;
    inFlight.current = true;
    try {
      await api.scaleService(stack, service, to);
      lastDone.current = Date.now();
      inFlight.current = false;
      // More clicks while this one was on its way: send where they ended.
      if (wanted.current !== to) void send();
    } catch (e) {
      inFlight.current = false;
      wanted.current = null;
      setTarget(null);
      notifyError(`Could not scale ${stack}/${service} to ${to}`, e);
    }
  };

  const ask = (to: number) => {
    wanted.current = to;
    setTarget(to);
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => void send(), SETTLE_MS);
  };

  const shown = target ?? scale;
  const commitDraft = () => {
    if (draft === null) return;
    setDraft(null);
    const text = draft.trim();
    if (text === "" || Number(text) === shown) return;
    // Whole numbers go to the API, which says what range it takes; anything else is no scale.
    if (!/^-?\d+$/.test(text)) {
      notifyError(`Could not scale ${stack}/${service}`, new Error(`"${text}" is not a whole number: type the number of containers, e.g. 3`));
      return;
    }
    ask(Number(text));
  };
  const onKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === "Enter") commitDraft();
    if (e.key === "Escape") setDraft(null);
  };

  return (
    <Group gap={4} wrap="nowrap" data-testid="scale-control" data-target={target ?? ""} data-scale={scale}>
      <Tooltip label="Scale down">
        <ActionIcon variant="default" disabled={disabled || shown <= 0} onClick={() => ask(Math.max(0, shown - 1))} data-testid="scale-down" aria-label="Scale down">
          −
        </ActionIcon>
      </Tooltip>
      <TextInput
        w={52}
        size="xs"
        inputMode="numeric"
        aria-label={`Scale of ${stack}/${service}`}
        disabled={disabled}
        value={draft ?? String(shown)}
        onChange={(e) => setDraft(e.currentTarget.value)}
        onBlur={commitDraft}
        onKeyDown={onKey}
        styles={{ input: { textAlign: "center", fontWeight: target !== null ? 700 : undefined } }}
        data-testid="scale"
      />
      <Tooltip label="Scale up">
        <ActionIcon variant="default" disabled={disabled} onClick={() => ask(shown + 1)} data-testid="scale-up" aria-label="Scale up">
          +
        </ActionIcon>
      </Tooltip>
    </Group>
  );
}
