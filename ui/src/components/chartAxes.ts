// The y axes of the usage charts: where ticks go and how they read, per unit. Ticks step by
// amounts that read well in the unit (1, 2, 5 × 10ⁿ percent; 1, 2, 5 … 500 × KiB, MiB, GiB), each
// label has as many decimals as its step needs (so no two read the same, never "0.0 % / 0.0 %"),
// and the axis never spans less than a floor (a container idling at 0.02 % shows as a line near
// the bottom, not as a full-height chart of noise).

export type Unit = "percent" | "bytes" | "rate";

const KIB = 1024;

/** The least the y axis spans: 1 %, 1 MiB, 1 KiB/s. */
const FLOOR: Record<Unit, number> = { percent: 1, bytes: KIB * KIB, rate: KIB };

/** Top of the y axis for data up to `max`: a little headroom, and never below the unit's floor. */
export function yTop(unit: Unit, max: number): number {
  return Math.max(FLOOR[unit], Number.isFinite(max) ? max * 1.1 : 0);
}

const STEPS = [1, 2, 5];

/** Tick steps uPlot may choose from, smallest first. */
export function yIncrs(unit: Unit): number[] {
  if (unit === "percent") {
    const out: number[] = [];
    for (let e = -2; e <= 4; e++) for (const s of STEPS) out.push(s * 10 ** e);
    return out;
  }
  const out: number[] = [];
  for (let p = 0; p <= 5; p++) for (const s of [1, 2, 5, 10, 20, 50, 100, 200, 500]) out.push(s * KIB ** p);
  return out;
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** The labels of ticks at `splits`, `incr` apart. */
export function yLabels(unit: Unit, splits: number[], incr: number): string[] {
  if (unit === "percent") {
    const decimals = incr >= 1 ? 0 : Math.min(4, Math.ceil(-Math.log10(incr) - 1e-9));
    return splits.map((v) => (v === 0 ? "0" : `${v.toFixed(decimals)} %`));
  }
  // The unit the step is a whole number of: every tick is then exact in it.
  const power = Math.max(0, Math.min(BYTE_UNITS.length - 1, Math.floor(Math.log(Math.max(incr, 1)) / Math.log(KIB) + 1e-9)));
  const scale = KIB ** power;
  const suffix = unit === "rate" ? `${BYTE_UNITS[power]}/s` : BYTE_UNITS[power]!;
  return splits.map((v) => (v === 0 ? "0" : `${Math.round(v / scale)} ${suffix}`));
}

/** A value as the legend shows it: three significant digits in the largest unit that fits. */
export function formatValue(unit: Unit, v: number): string {
  if (!Number.isFinite(v)) return "–";
  if (unit === "percent") return `${v.toFixed(v === 0 ? 0 : v < 1 ? 2 : v < 10 ? 1 : 0)} %`;
  let power = 0;
  let n = v;
  while (n >= 1024 && power < BYTE_UNITS.length - 1) {
    n /= 1024;
    power++;
  }
  const text = n === 0 ? "0" : n >= 100 || power === 0 ? Math.round(n).toString() : n.toFixed(n >= 10 ? 1 : 2);
  return `${text} ${BYTE_UNITS[power]}${unit === "rate" ? "/s" : ""}`;
}
