/**
 * `deno task report` end to end: a realistic metrics log in, an HTML page out, opened in Debian's
 * headless chromium (driven by playwright-core, never downloaded) to check what it draws.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { MetricsRecord } from "../lib/observe/metrics.ts";
import { ROOT } from "../testing/testing.ts";

const CHROMIUM = "/usr/bin/chromium";
const available = existsSync(CHROMIUM);
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Records of one run: a snapshot every 5 s with a wobbling rate, lag and latency. */
function simulateRun(
  role: MetricsRecord["role"],
  topic: string,
  startAt: Date,
  seconds: number,
  speed: number,
): MetricsRecord[] {
  const run = crypto.randomUUID();
  const records: MetricsRecord[] = [];
  let done = 0;
  for (let t = 0; t <= seconds; t += 5) {
    const intervalRate = t === 0 ? 0 : Math.round(speed * (1 + 0.25 * Math.sin(t / 7 + speed)));
    done += intervalRate * (t === 0 ? 0 : 5);
    const consumer = role === "consumer";
    const behind = Math.max(0, Math.round(speed * 16 - done + 4000 * Math.cos(t / 5)));
    records.push({
      ts: new Date(startAt.getTime() + t * 1000).toISOString(),
      run,
      role,
      event: t === 0 ? "start" : t + 5 > seconds ? "end" : "snapshot",
      topic,
      table: consumer ? "movie_ticket" : undefined,
      group: consumer ? "report-e2e" : undefined,
      counts: consumer ? { received: done, stored: done - 3, duplicates: 3 } : { sent: done },
      elapsedSeconds: t,
      rate: t === 0 ? 0 : Math.round(done / t),
      intervalRate,
      lag: consumer ? { "0": behind >> 1, "1": behind >> 2, "2": behind >> 2 } : undefined,
      latencyMs: consumer && t > 0
        ? {
          p50: 40 + 15 * Math.sin(t / 9 + speed),
          p99: speed / 25 + 60 * Math.sin(t / 6 + speed),
          max: 400,
          count: 900,
        }
        : undefined,
      peakRssMb: 90 + t / 2 + (consumer ? 40 : 0),
      outcome: t + 5 > seconds ? "ok" : undefined,
    });
  }
  return records;
}

Deno.test({
  name: `report.ts writes a page that headless chromium draws without any request${
    available ? "" : ` (skipped: ${CHROMIUM} is missing; run dev/ensure_chromium.sh)`
  }`,
  ignore: !available,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "tickets-report-" });
    const log = join(dir, "metrics.jsonl");
    const out = join(dir, "report.html");
    const base = Date.now() - 3600_000;
    const runs = [
      simulateRun("producer", "tickets-e2e", new Date(base), 60, 5200),
      simulateRun("consumer", "tickets-e2e", new Date(base + 2000), 75, 4100),
      simulateRun("producer", "tickets-e2e", new Date(base + 600_000), 45, 6100),
      simulateRun("consumer", "tickets-e2e", new Date(base + 601_000), 50, 5600),
    ];
    await Deno.writeTextFile(log, runs.flat().map((r) => JSON.stringify(r)).join("\n") + "\n");

    await t.step("deno task report prints the summary and writes the page", async () => {
      const result = await new Deno.Command(Deno.execPath(), {
        args: ["task", "report", "--metrics-log", log, "--out", out],
        cwd: ROOT,
      }).output();
      const stdout = new TextDecoder().decode(result.stdout);
      assert.ok(result.success, new TextDecoder().decode(result.stderr));
      assert.match(stdout, /^4 runs found$/m);
      assert.match(stdout, /^producer: 2 runs, sent [\d,]+, best [\d,.]+ msg\/s/m);
      assert.match(stdout, /^consumer: 2 runs, .*latest p99 [\d.]+ ms, peak RSS [\d.]+ MiB/m);
    });

    await t.step("the page draws every chart in a browser and requests nothing", async () => {
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        const requested: string[] = [];
        const errors: string[] = [];
        page.on("request", (request) => requested.push(request.url()));
        page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
        await page.route("**/*", (route) => {
          const url = route.request().url();
          return /^(file|data):/.test(url) ? route.continue() : route.abort();
        });
        await page.goto(`file://${out}`, { waitUntil: "load" });

        const expected = { throughput: 4, lag: 2, latency: 4 };
        for (const [id, count] of Object.entries(expected)) {
          const paths = page.locator(`svg[data-chart="${id}"] path.series`);
          assert.equal(await paths.count(), count, `series in the ${id} chart`);
          for (const path of await paths.all()) {
            const d = (await path.getAttribute("d")) ?? "";
            assert.ok((d.match(/L/g)?.length ?? 0) >= 5, `${id}: path d too short: ${d}`);
            const box = await path.boundingBox();
            assert.ok(box && box.width > 0 && box.height > 0, `${id}: empty bounding box`);
          }
        }
        assert.equal(await page.locator("table tbody tr").count(), 4);
        assert.ok(requested.includes(`file://${out}`), "the request listener saw no request");
        const outside = requested.filter((url) => !/^(file|data):/.test(url));
        assert.deepEqual(outside, [], "the page made a request outside file:// and data:");
        assert.deepEqual(errors, [], "console errors (a blocked load shows up here)");

        await Deno.mkdir(join(ROOT, "logs"), { recursive: true });
        await page.screenshot({ path: join(ROOT, "logs/report.png"), fullPage: true });
      } finally {
        await browser.close();
      }
    });

    await Deno.remove(dir, { recursive: true });
  },
});
