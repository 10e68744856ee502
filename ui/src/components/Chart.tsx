// A thin React wrapper around uPlot: small, fast with thousands of points, canvas-drawn.
import { useElementSize } from "@mantine/hooks";
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

/** Narrowest time axis, in seconds: with one or two samples uPlot would otherwise pad the axis to years. */
const MIN_SPAN = 60;

export interface ChartSeries {
  label: string;
  color: string;
}

/**
 * `times` are Unix seconds; `values` has one array per series, aligned with `times`.
 * `format` turns a value into axis and legend text.
 */
export function Chart({ title, times, values, series, format, testId, height = 180 }: {
  title: string;
  times: number[];
  values: number[][];
  series: ChartSeries[];
  format: (v: number) => string;
  testId?: string;
  height?: number;
}) {
  const { ref: box, width } = useElementSize();
  const holder = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const formatRef = useRef(format);
  formatRef.current = format;
  const shape = series.map((s) => s.label).join("|");

  // Built once per shape; data and size changes go through setData / setSize.
  useEffect(() => {
    if (!holder.current) return;
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
          value: (_u: uPlot, v: number | null) => (v == null ? "–" : formatRef.current(v)),
        })),
      ],
      axes: [{}, { size: 70, values: (_u: uPlot, ticks: number[]) => ticks.map((t) => formatRef.current(t)) }],
      scales: {
        x: { time: true, range: (_u: uPlot, min: number, max: number) => (max - min < MIN_SPAN ? [max - MIN_SPAN, max] : [min, max]) },
        y: { range: (_u: uPlot, _min: number, max: number) => [0, max > 0 ? max * 1.1 : 1] },
      },
      legend: { live: true },
    };
    plot.current = new uPlot(opts, [times, ...values], holder.current);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, title, height]);

  useEffect(() => {
    plot.current?.setData([times, ...values]);
  }, [times, values]);

  useEffect(() => {
    if (width > 0) plot.current?.setSize({ width, height });
  }, [width, height]);

  return (
    <div ref={box} data-testid={testId} data-points={times.length} style={{ width: "100%" }}>
      <div ref={holder} />
    </div>
  );
}
