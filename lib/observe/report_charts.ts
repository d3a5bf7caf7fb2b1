/**
 * The report's charts, drawn as inline SVG (nothing is fetched): small multiples (one small panel
 * per run, every panel of a grid on one y scale, so 50+ runs stay legible) and a bar chart with
 * one bar per run.
 * @module
 */

/** One line of a panel. */
export interface Series {
  label: string;
  color: string;
  points: Array<[x: number, y: number]>;
  dashed?: boolean;
}

/** One run's panel in a grid of small multiples. */
export interface Panel {
  /** Value of the panel svg's `data-run` attribute (the run id). */
  run: string;
  /** Shown above the panel, e.g. `#3 consumer 1a2b3c4d`. */
  title: string;
  /** Second line of the title, e.g. the topic. */
  subtitle?: string;
  series: Series[];
  /** Drawn with a red frame (a run that did not end ok). */
  failed?: boolean;
}

/** What {@linkcode smallMultiples} draws. */
export interface GridOptions {
  /** Value of each panel svg's `data-chart` attribute. */
  id: string;
  /** Unit of the y axis, shown beside the top tick, e.g. `msg/s`. */
  yUnit: string;
  panels: Panel[];
  /** Legend entries: label, color, dashed. */
  legend: Array<{ label: string; color: string; dashed?: boolean }>;
  /** Shown instead of the grid when no panel has a point. */
  emptyMessage: string;
}

/** One bar of {@linkcode barChart}. */
export interface Bar {
  /** Short label under the bar, e.g. `#3`. */
  label: string;
  value: number;
  color: string;
  /** Hover text. */
  title: string;
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for HTML and SVG content and attribute values. */
export function escapeHtml(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** Round tick values from 0 to at least `max` (about `target` steps of 1, 2, 2.5 or 5 × 10^k). */
export function niceTicks(max: number, target = 5): number[] {
  const top = Number.isFinite(max) && max > 0 ? max : 1;
  const raw = top / target;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const steps = Math.ceil(top / step - 1e-9);
  return Array.from({ length: steps + 1 }, (_, i) => Number((i * step).toPrecision(12)));
}

/** A number for people: thousands separators, at most `digits` decimals. */
export function formatNumber(value: number, digits = 0): string {
  return value.toLocaleString("en-US", { maximumFractionDigits: digits });
}

/** The largest finite value, or 0. */
export function maxOf(values: Array<number | undefined>): number {
  return values.reduce<number>(
    (max, v) => (typeof v === "number" && Number.isFinite(v) && v > max ? v : max),
    0,
  );
}

/** A short axis label: `12k`, `1.5M`, `0.25`. */
export function tickLabel(value: number): string {
  if (value >= 1e6) return `${formatNumber(value / 1e6, 2)}M`;
  if (value >= 1e4) return `${formatNumber(value / 1e3, 1)}k`;
  return formatNumber(value, 2);
}

/** A run's length for an axis end: `45 s`, `12 min`, `3.5 h`. */
export function shortDuration(seconds: number): string {
  if (seconds < 120) return `${formatNumber(seconds, 0)} s`;
  if (seconds < 7200) return `${formatNumber(seconds / 60, 0)} min`;
  return `${formatNumber(seconds / 3600, 1)} h`;
}

function finitePoints(series: Series): Series {
  return { ...series, points: series.points.filter((p) => p.every(Number.isFinite)) };
}

/** One panel: its own time axis, the grid's shared y axis (`yTicks`). */
function panelSvg(id: string, unit: string, panel: Panel, yTicks: number[]): string {
  const [width, height, left, right, top, bottom] = [260, 150, 40, 10, 40, 20];
  const series = panel.series.map(finitePoints).filter((s) => s.points.length > 0);
  const xMax = maxOf(series.flatMap((s) => s.points.map((p) => p[0]))) || 1;
  const yMax = yTicks.at(-1)!;
  const x = (v: number) => (left + (v / xMax) * (width - left - right)).toFixed(1);
  const y = (v: number) =>
    (height - bottom - (Math.min(v, yMax) / yMax) * (height - top - bottom)).toFixed(1);
  const out = [
    `<svg class="panel${panel.failed ? " failed" : ""}" data-chart="${escapeHtml(id)}" ` +
    `data-run="${escapeHtml(panel.run)}" viewBox="0 0 ${width} ${height}" role="img" ` +
    `aria-label="${escapeHtml(`${panel.title} ${panel.subtitle ?? ""}`)}">`,
    `<text class="ptitle" x="4" y="14">${escapeHtml(panel.title)}</text>`,
    `<text class="psub" x="4" y="28">${escapeHtml(panel.subtitle ?? "")}</text>`,
  ];
  for (const t of [yTicks[0]!, yTicks.at(-1)!]) {
    out.push(
      `<line class="grid" x1="${left}" x2="${width - right}" y1="${y(t)}" y2="${y(t)}"/>`,
      `<text class="tick" x="${left - 4}" y="${y(t)}" text-anchor="end" dy="0.35em">${
        tickLabel(t)
      }</text>`,
    );
  }
  out.push(
    `<text class="tick" x="${left}" y="${height - 5}">0</text>`,
    `<text class="tick" x="${width - right}" y="${height - 5}" text-anchor="end">${
      shortDuration(xMax)
    }</text>`,
    `<text class="tick unit" x="${width - right}" y="28" text-anchor="end">${
      escapeHtml(unit)
    }</text>`,
  );
  if (series.length === 0) {
    out.push(
      `<text class="empty" x="${(left + width - right) / 2}" y="${
        (top + height - bottom) / 2
      }" text-anchor="middle">no data</text>`,
    );
  }
  for (const s of series) {
    const points = [...s.points].sort((a, b) => a[0] - b[0]);
    const d = points.map(([px, py], i) => `${i ? "L" : "M"}${x(px)},${y(py)}`).join("");
    out.push(
      `<path class="series" d="${d}" stroke="${escapeHtml(s.color)}"${
        s.dashed ? ' stroke-dasharray="4 3"' : ""
      } data-label="${escapeHtml(s.label)}"><title>${escapeHtml(s.label)}</title></path>`,
    );
    if (points.length === 1) {
      const [px, py] = points[0]!;
      out.push(`<circle class="point" cx="${x(px)}" cy="${y(py)}" r="3" fill="${s.color}"/>`);
    }
  }
  out.push("</svg>");
  return out.join("");
}

/**
 * Small multiples: one panel per run in a wrapping grid, every panel on the same y scale (so
 * panels compare at a glance) and its own time axis. Each panel is an `<svg data-chart=id
 * data-run=run>` with one `<path class="series">` per series that has points.
 */
export function smallMultiples(options: GridOptions): string {
  const all = options.panels.flatMap((p) => p.series.map(finitePoints));
  if (all.every((s) => s.points.length === 0)) {
    return `<p class="empty-grid" data-empty="${escapeHtml(options.id)}">${
      escapeHtml(options.emptyMessage)
    }</p>`;
  }
  const yTicks = niceTicks(maxOf(all.flatMap((s) => s.points.map((p) => p[1]))), 2);
  const legend = options.legend.map((l) =>
    `<li><span class="swatch${l.dashed ? " dashed" : ""}" style="border-color:${
      escapeHtml(l.color)
    }"></span>${escapeHtml(l.label)}</li>`
  ).join("");
  const panels = options.panels.map((p) => panelSvg(options.id, options.yUnit, p, yTicks));
  return `<ul class="legend">${legend}<li class="scale">same scale in every panel: 0 to ${
    tickLabel(yTicks.at(-1)!)
  } ${escapeHtml(options.yUnit)}</li></ul>\n<div class="panels">${panels.join("\n")}</div>`;
}

/**
 * A bar chart with one bar per run (in table order), labelled sparsely when there are many, so 60
 * bars stay readable; each bar is a `<rect class="bar">` with its hover title.
 */
export function barChart(id: string, title: string, unit: string, bars: Bar[]): string {
  const [width, height, left, right, top, bottom] = [1000, 220, 64, 12, 34, 34];
  const ticks = niceTicks(maxOf(bars.map((b) => b.value)), 4);
  const yMax = ticks.at(-1)!;
  const slot = (width - left - right) / Math.max(1, bars.length);
  const y = (v: number) => height - bottom - (v / yMax) * (height - top - bottom);
  const every = Math.max(1, Math.ceil(bars.length / 30));
  const out = [
    `<svg data-chart="${escapeHtml(id)}" viewBox="0 0 ${width} ${height}" role="img" ` +
    `aria-label="${escapeHtml(title)}">`,
    `<text class="title" x="${left}" y="20">${escapeHtml(title)}</text>`,
  ];
  for (const t of ticks) {
    out.push(
      `<line class="grid" x1="${left}" x2="${width - right}" y1="${y(t).toFixed(1)}" y2="${
        y(t).toFixed(1)
      }"/>`,
      `<text class="tick" x="${left - 6}" y="${y(t).toFixed(1)}" text-anchor="end" dy="0.35em">${
        tickLabel(t)
      }</text>`,
    );
  }
  out.push(
    `<text class="tick unit" x="${left}" y="${top - 4}">${escapeHtml(unit)}</text>`,
  );
  bars.forEach((bar, i) => {
    const value = Number.isFinite(bar.value) && bar.value > 0 ? bar.value : 0;
    const x = left + i * slot + slot * 0.15;
    const top = y(value);
    out.push(
      `<rect class="bar" x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${
        (slot * 0.7).toFixed(1)
      }" height="${(height - bottom - top).toFixed(1)}" fill="${escapeHtml(bar.color)}">` +
        `<title>${escapeHtml(bar.title)}</title></rect>`,
    );
    if (i % every === 0) {
      out.push(
        `<text class="tick" x="${(x + slot * 0.35).toFixed(1)}" y="${
          height - bottom + 16
        }" text-anchor="middle">${escapeHtml(bar.label)}</text>`,
      );
    }
  });
  out.push("</svg>");
  return out.join("\n");
}
