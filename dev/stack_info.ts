/**
 * Where the local stack (dev/stack.sh) says its services are: `.stack/stack.json`. Used by the
 * demo, the tests and the bench.
 * @module
 */
import { join } from "node:path";

/** What `deno task stack up` writes to `.stack/stack.json`. */
export interface StackInfo {
  kafka: {
    plaintext: string;
    ssl: string;
    saslSsl?: string;
    saslUsername?: string;
    saslPassword?: string;
  };
  certPath: string;
  postgresUri: string;
  postgresAdminUri?: string;
}

/** The repository's root folder. */
export const ROOT = new URL("../", import.meta.url).pathname;

/** Reads `.stack/stack.json`; throws a clear error when the stack is not up. */
export function stackInfo(): StackInfo {
  try {
    return JSON.parse(Deno.readTextFileSync(join(ROOT, ".stack/stack.json")));
  } catch {
    throw new Error(
      "the local stack is not up: run `deno task stack up` (or `deno task test`, which starts it)",
    );
  }
}
