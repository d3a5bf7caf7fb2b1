/**
 * `deno task report` end to end: a realistic metrics log in, an HTML page out, opened in Debian's
 * headless chromium (driven by playwright-core, never downloaded) to check what it draws.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { MetricsRecord } from "../lib/observe/metrics.ts";
import type { ReportRecord } from "../lib/observe/report.ts";
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
  outcome = "ok",
): ReportRecord[] {
  const run = crypto.randomUUID();
  const records: ReportRecord[] = [];
  let done = 0;
  for (let t = 0; t <= seconds; t += 5) {
    const intervalRate = t === 0 ? 0 : Math.round(speed * (1 + 0.25 * Math.sin(t / 7 + speed)));
    done += intervalRate * (t === 0 ? 0 : 5);
    const consumer = role === "consumer";
    const behind = Math.max(0, Math.round(speed * 16 - done + 4000 * Math.cos(t / 5)));
    const letters = consumer ? Math.floor(done / 20_000) : 0;
    records.push({
      ts: new Date(startAt.getTime() + t * 1000).toISOString(),
      run,
      role,
      event: t === 0 ? "start" : t + 5 > seconds ? "end" : "snapshot",
      topic,
      table: consumer ? "movie_ticket" : undefined,
      group: consumer ? "report-e2e" : undefined,
      counts: consumer
        ? {
          received: done,
          stored: done - 3 - letters - (done >> 6),
          cancelled: done >> 6,
          duplicates: 3,
          deadLetters: letters,
        }
        : { sent: done },
      deadLettersByReason: consumer
        ? { BAD_EMAIL: letters - (letters >> 2), SEAT_TAKEN: letters >> 2 }
        : undefined,
      elapsedSeconds: t,
      rate: t === 0 ? 0 : Math.round(done / t),
      intervalRate,
      lag: consumer ? { "0": behind >> 1, "1": behind >> 2, "2": behind >> 2 } : undefined,
      latencyMs: consumer && t > 0
        ? {
          p50: 40 + 15 * Math.sin(t / 9 + speed),
          p99: 90 + speed / 25 + 60 * Math.sin(t / 6 + speed),
          max: 400,
          count: 900,
        }
        : undefined,
      peakRssMb: 90 + t / 2 + (consumer ? 40 : 0),
      outcome: t + 5 > seconds ? outcome : undefined,
    });
  }
  return records;
}

/** 60 runs over five hours: a producer and a consumer every 10 minutes on three topics. */
function sixtyRuns(): ReportRecord[][] {
  const base = Date.now() - 5 * 3600_000;
  return Array.from({ length: 30 }, (_, i) => {
    const topic = `tickets-e2e-${i % 3}`;
    const speed = 2000 + ((i * 7919) % 6000);
    const at = base + i * 600_000;
    return [
      simulateRun("producer", topic, new Date(at), 40 + (i % 5) * 10, speed),
      simulateRun(
        "consumer",
        topic,
        new Date(at + 2000),
        50 + (i % 4) * 10,
        speed * 0.8,
        i === 7 ? "PostgreSQL at 127.0.0.1:5432 unreachable" : "ok",
      ),
    ];
  }).flat();
}

/** Runs `deno task report` with `args`; returns stdout, asserting exit 0. */
async function report(args: string[]): Promise<string> {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["task", "report", ...args],
    cwd: ROOT,
  }).output();
  assert.ok(result.success, new TextDecoder().decode(result.stderr));
  return new TextDecoder().decode(result.stdout);
}

/** True when two boxes overlap. */
function overlap(a: Box, b: Box): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height &&
    b.y < a.y + a.height;
}
type Box = { x: number; y: number; width: number; height: number };

Deno.test({
  name:
    `report.ts writes a page that headless chromium draws legibly for 60 runs without any request${
      available ? "" : ` (skipped: ${CHROMIUM} is missing; run dev/ensure_chromium.sh)`
    }`,
  ignore: !available,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "tickets-report-" });
    const log = join(dir, "metrics.jsonl");
    const out = join(dir, "report.html");
    const runs = sixtyRuns();
    await Deno.writeTextFile(log, runs.flat().map((r) => JSON.stringify(r)).join("\n") + "\n");

    await t.step(
      "by default the report shows the last 10 runs; --topic and --run pick others",
      async () => {
        const stdout = await report(["--metrics-log", log, "--out", out]);
        assert.match(stdout, /^showing 10 of 60 runs$/m);
        assert.match(stdout, /^10 runs found$/m);
        assert.match(stdout, /^producer: 5 runs, sent [\d,]+, best [\d,.]+ msg\/s/m);
        assert.match(stdout, /^consumer: 5 runs, .*latest p99 [\d.]+ ms, peak RSS [\d.]+ MiB/m);
        assert.match(stdout, /^dead letters: BAD_EMAIL [\d,]+, SEAT_TAKEN [\d,]+$/m);
        assert.equal((await Deno.readTextFile(out)).match(/<tr data-run=/g)?.length, 10);
        const topic = await report([
          "--metrics-log",
          log,
          "--out",
          out,
          "--topic",
          "tickets-e2e-1",
        ]);
        assert.match(topic, /^showing 10 of 60 runs$/m);
        const page = await Deno.readTextFile(out);
        assert.equal(page.match(/<tr data-run=/g)?.length, 10);
        assert.equal(page.match(/tickets-e2e-[02]/g), null, "a run of another topic is shown");
        const id = runs[3]![0]!.run;
        await report(["--metrics-log", log, "--out", out, "--run", id.slice(0, 8)]);
        assert.deepEqual(
          [...(await Deno.readTextFile(out)).matchAll(/<tr data-run="([^"]+)"/g)].map((m) => m[1]),
          [id],
        );
        const bad = await new Deno.Command(Deno.execPath(), {
          args: ["task", "report", "--metrics-log", log, "--out", out, "--last", "0"],
          cwd: ROOT,
        }).output();
        assert.equal(bad.code, 2);
      },
    );

    await t.step(
      "--last 60 draws every run in a browser, legibly, and requests nothing",
      async () => {
        const stdout = await report(["--metrics-log", log, "--out", out, "--last", "60"]);
        assert.match(stdout, /^60 runs found$/m);
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

          // small multiples: one panel per run, each wide enough to read, with its lines drawn
          const expected = { throughput: [60, 1], lag: [30, 1], latency: [30, 2] };
          for (const [id, [panels, lines]] of Object.entries(expected)) {
            const svgs = page.locator(`svg.panel[data-chart="${id}"]`);
            assert.equal(await svgs.count(), panels, `panels in the ${id} grid`);
            for (const svg of await svgs.all()) {
              const box = await svg.boundingBox();
              assert.ok(box && box.width >= 230 && box.height >= 130, `${id}: panel too small`);
              const paths = svg.locator("path.series");
              assert.equal(await paths.count(), lines, `${id}: lines in a panel`);
              for (const path of await paths.all()) {
                const d = (await path.getAttribute("d")) ?? "";
                assert.ok((d.match(/L/g)?.length ?? 0) >= 5, `${id}: path d too short: ${d}`);
                const line = await path.boundingBox();
                assert.ok(line && line.width > 0 && line.height > 0, `${id}: empty bounding box`);
              }
            }
          }
          assert.equal(await page.locator("svg.panel.failed").count(), 3, "the failed run, framed");
          // one bar per run, and the labels under the bars do not run into each other
          assert.equal(await page.locator('svg[data-chart="rates"] rect.bar').count(), 60);
          const labels = await Promise.all(
            (await page.locator('svg[data-chart="rates"] text[text-anchor="middle"]').all())
              .map((l) => l.boundingBox()),
          );
          assert.ok(labels.length >= 20);
          labels.forEach((a, i) => {
            const b = labels[i + 1];
            if (a && b) assert.ok(!overlap(a, b), `bar labels ${i + 1} and ${i + 2} overlap`);
          });
          // the table: one row per run, all its columns visible without scrolling sideways
          assert.equal(await page.locator("table.runs tbody tr").count(), 60);
          const scroll = await page.locator("div.scroll").evaluate((e) =>
            e.scrollWidth - e.clientWidth
          );
          assert.ok(scroll <= 0, `the runs table is ${scroll}px too wide for 1280px`);
          assert.equal(await page.locator("table.reasons tbody tr").count(), 2);

          assert.ok(requested.includes(`file://${out}`), "the request listener saw no request");
          const outside = requested.filter((url) => !/^(file|data):/.test(url));
          assert.deepEqual(outside, [], "the page made a request outside file:// and data:");
          assert.deepEqual(errors, [], "console errors (a blocked load shows up here)");

          await Deno.mkdir(join(ROOT, "logs"), { recursive: true });
          await page.screenshot({ path: join(ROOT, "logs/report.png"), fullPage: true });
        } finally {
          await browser.close();
        }
      },
    );

    await Deno.remove(dir, { recursive: true });
  },
});
