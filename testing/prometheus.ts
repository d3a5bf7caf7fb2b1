/**
 * Test helpers for the Prometheus endpoint: reading series out of a text exposition, and
 * promtool's check of one (through dev/stack.sh, which unpacks promtool on first use).
 * @module
 */
import { join } from "node:path";
import { ROOT } from "../dev/stack_info.ts";

/**
 * The value of the series `name` whose labels include `labels`, from a text exposition; undefined
 * when there is none.
 */
export function seriesValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries(
      [...(match[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3]);
  }
  return undefined;
}

/** Runs promtool with `args` and `input` on its stdin: its exit code and what it printed. */
export async function promtool(
  args: string[],
  input = "",
): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("bash", {
    args: [join(ROOT, "dev/stack.sh"), "promtool", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, output: decode(out.stdout) + decode(out.stderr) };
}

/** `promtool check metrics` of a text exposition: its exit code and what it printed. */
export function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  return promtool(["check", "metrics"], text);
}
