/**
 * The architecture, checked: lib/ is layered (a module imports its own folder or a lower layer,
 * never a higher one), has no import cycle, imports nothing outside lib/ except in tests, and
 * importing any of its modules changes nothing in the process.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import process from "node:process";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const LIB = dirname(fileURLToPath(import.meta.url));

/** Layers from the bottom; a module may import its own folder and anything in a lower layer. */
const LAYERS: string[][] = [
  ["log.ts"],
  ["errors.ts", "signals.ts"],
  ["cli/"],
  ["config/"],
  ["model/"],
  ["kafka/", "postgres/"],
  ["observe/"],
  ["pipeline/"],
  ["commands/"],
  ["commands.ts"],
];

function layerOf(path: string): { rank: number; unit: string } {
  for (const [rank, units] of LAYERS.entries()) {
    for (const unit of units) {
      if (unit.endsWith("/") ? path.startsWith(unit) : path === unit) return { rank, unit };
    }
  }
  throw new Error(`lib/${path} is in no layer: add it to LAYERS in lib/layers_test.ts`);
}

function libModules(dir = LIB): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) found.push(...libModules(path));
    else if (entry.name.endsWith(".ts")) found.push(relative(LIB, path));
  }
  return found.sort();
}

const isTest = (path: string) => path.endsWith("_test.ts");

/** The relative imports of a module (static, dynamic and type-only), as paths from lib/. */
function importsOf(path: string): string[] {
  const text = Deno.readTextFileSync(join(LIB, path));
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)];
  return specs.map((m) => normalize(join(dirname(path), m[1]!)));
}

Deno.test("every module of lib/ imports only its own folder or a lower layer", () => {
  const wrong: string[] = [];
  for (const path of libModules().filter((p) => !isTest(p))) {
    const from = layerOf(path);
    for (const target of importsOf(path)) {
      if (target.startsWith("..")) {
        wrong.push(`lib/${path} imports ${target} (outside lib/)`);
        continue;
      }
      const to = layerOf(target);
      if (to.unit === from.unit) continue;
      if (to.rank >= from.rank) wrong.push(`lib/${path} (${from.unit}) imports lib/${target}`);
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("lib/ has no import cycle", () => {
  const graph = new Map(
    libModules().map((p) => [p, importsOf(p).filter((t) => !t.startsWith(".."))]),
  );
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (node: string, path: string[]) => {
    state.set(node, "open");
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "open") cycles.push([...path, node, next].join(" -> "));
      else if (!state.has(next)) visit(next, [...path, node]);
    }
    state.set(node, "done");
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node, []);
  assert.deepEqual(cycles, []);
});

Deno.test("importing every module of lib/ changes nothing in the process", async () => {
  // KafkaJS's own Encoder, as createKafka patches it (see kafka/kafka_encoder.ts)
  const encoder = createRequire(import.meta.url)("kafkajs/src/protocol/encoder.js");
  const methods = () =>
    Object.values(Object.getOwnPropertyDescriptors(encoder.prototype)).map((d) => d.value);
  const before = {
    emitWarning: process.emitWarning,
    encoder: methods(),
    env: Deno.env.toObject(),
    cwd: Deno.cwd(),
  };
  const printed: unknown[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => printed.push(a);
  console.error = (...a: unknown[]) => printed.push(a);
  try {
    for (const path of libModules().filter((p) => !isTest(p))) await import(join(LIB, path));
  } finally {
    Object.assign(console, { log, error });
  }
  assert.equal(process.emitWarning, before.emitWarning, "process.emitWarning was patched");
  assert.deepEqual(methods(), before.encoder, "KafkaJS's encoder was patched");
  assert.deepEqual(Deno.env.toObject(), before.env, "the environment changed");
  assert.equal(Deno.cwd(), before.cwd);
  assert.deepEqual(printed, [], "a module printed on import");
});
