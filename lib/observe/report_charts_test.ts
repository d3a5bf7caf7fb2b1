import assert from "node:assert/strict";
import { barChart, niceTicks, smallMultiples } from "./report_charts.ts";

Deno.test("niceTicks() steps roundly from 0 to at least the maximum", () => {
  assert.deepEqual(niceTicks(97), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(niceTicks(0), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(1200, 4), [0, 500, 1000, 1500]);
});

Deno.test("smallMultiples() draws every panel against the same y scale", () => {
  const html = smallMultiples({
    id: "t",
    yUnit: "msg/s",
    emptyMessage: "none",
    legend: [{ label: "rate", color: "#000" }],
    panels: [
      {
        run: "a",
        title: "#1",
        series: [{ label: "a", color: "#000", points: [[0, 0], [10, 100]] }],
      },
      { run: "b", title: "#2", series: [{ label: "b", color: "#000", points: [[0, 0], [5, 50]] }] },
    ],
  });
  const tops = [...html.matchAll(/<path class="series" d="M[\d.]+,[\d.]+L[\d.]+,([\d.]+)"/g)]
    .map((m) => Number(m[1]));
  assert.equal(tops.length, 2);
  // 100 reaches the top of the plot, 50 lies halfway between it and the base line at y=130
  assert.ok(Math.abs((130 - tops[1]!) * 2 - (130 - tops[0]!)) < 0.2, `${tops}`);
  assert.match(html, /same scale in every panel: 0 to 100 msg\/s/);
  assert.equal(
    smallMultiples({ id: "x", yUnit: "", emptyMessage: "nothing yet", legend: [], panels: [] }),
    '<p class="empty-grid" data-empty="x">nothing yet</p>',
  );
});

Deno.test("barChart() draws one bar per value and labels at most about 30 of them", () => {
  const bars = Array.from({ length: 60 }, (_, i) => ({
    label: `#${i + 1}`,
    value: i * 10,
    color: "#123456",
    title: `run ${i + 1}`,
  }));
  const svg = barChart("rates", "Rates", "msg/s", bars);
  assert.equal(svg.match(/<rect class="bar"/g)?.length, 60);
  const labels = svg.match(/text-anchor="middle">#\d+</g)?.length ?? 0;
  assert.ok(labels >= 20 && labels <= 31, `${labels} labels`);
});
