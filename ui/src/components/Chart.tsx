// A thin React wrapper around uPlot: small, fast with thousands of points, canvas-drawn. Axes
// read in the chart's unit (chartAxes.ts); narrow charts get fewer time ticks, so labels never
// overlap. What the axes show is also written on the element (`data-y-ticks`, `data-x-span`,
// `data-x-ticks`, `data-plot-width`, `data-series`), since a canvas cannot be read back: tests and tools see what the user sees.
import { useElementSize } from "@mantine/hooks";
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { formatValue, yIncrs, yLabels, yTop, type Unit } from "./chartAxes.ts";

/** Narrowest time axis, in seconds: with one or two samples uPlot would otherwise pad the axis to years. */
const MIN_SPAN = 60;
/** Least room per time label, in CSS pixels ("12:04pm" is about 50 wide). */
const X_SPACE = 75;
/** Least room per value label, in CSS pixels. */
const Y_SPACE = 36;
const AXIS_FONT_PX = 12;

/**
 * The time axis: what uPlot asks for, except around data spanning less than [MIN_SPAN] (one
 * sample, which uPlot would otherwise stretch over 86,400,000 seconds), where it ends at the
 * last sample and spans MIN_SPAN.
 */
function xRange(u: uPlot, min: number | null, max: number | null): uPlot.Range.MinMax {
  const xs = u.data[0];
  if (min == null || max == null || xs.length === 0) return [min, max];
  const first = xs[0]!;
  const last = xs[xs.length - 1]!;
  if (last - first < MIN_SPAN && min <= first && max >= last) return [last - MIN_SPAN, last];
  return max - min < MIN_SPAN ? [max - MIN_SPAN, max] : [min, max];
}

export interface ChartSeries {
  label: string;
  color: string;
}

/** `times` are Unix seconds; `values` has one array per series, aligned with `times`. */
export function Chart({ title, times, values, series, unit, testId, height = 180 }: {
  title: string;
  times: number[];
  values: number[][];
  series: ChartSeries[];
  unit: Unit;
  testId?: string;
  height?: number;
}) {
  const { ref: box, width } = useElementSize();
  const holder = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => s.label).join("|");

  // Built once per shape; data and size changes go through setData / setSize.
  useEffect(() => {
    const el = holder.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(width, 200),
      height,
      title,
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          fill: `${s.color}22`,
          value: (_u: uPlot, v: number | null) => (v == null ? "–" : formatValue(unit, v)),
        })),
      ],
      axes: [
        {
          space: X_SPACE,
          filter: (u: uPlot, splits: number[]) => {
            el.dataset.xTicks = String(splits.length);
            el.dataset.plotWidth = String(Math.round(u.bbox.width / uPlot.pxRatio));
            return splits;
          },
        },
        {
          space: Y_SPACE,
          incrs: yIncrs(unit),
          values: (_u: uPlot, splits: number[], _i: number, _space: number, incr: number) => {
            const labels = yLabels(unit, splits, incr);
            el.dataset.yTicks = labels.join("|");
            return labels;
          },
          // As wide as the longest label, so none runs into the plot.
          size: (_u: uPlot, labels: string[] | null) => Math.ceil(Math.max(3, ...(labels ?? []).map((l) => (l ?? "").length)) * AXIS_FONT_PX * 0.62) + 16,
        },
      ],
      scales: {
        x: { time: true, range: xRange },
        y: { range: (_u: uPlot, _min: number, max: number) => [0, yTop(unit, max)] },
      },
      legend: { live: true },
      hooks: {
        setScale: [
          (u: uPlot, key: string) => {
            const x = u.scales.x;
            if (key === "x" && x?.min != null && x.max != null) el.dataset.xSpan = String(Math.round(x.max - x.min));
          },
        ],
      },
    };
    el.dataset.series = series.map((s) => s.label).join("|");
    plot.current = new uPlot(opts, [times, ...values], el);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, title, height, unit]);

  useEffect(() => {
    plot.current?.setData([times, ...values]);
  }, [times, values]);

  useEffect(() => {
    if (width > 0) plot.current?.setSize({ width, height });
  }, [width, height]);

  return (
    <div ref={box} data-testid={testId} data-points={times.length} style={{ width: "100%" }}>
      <div ref={holder} data-testid="chart" data-title={title} />
    </div>
  );
}
