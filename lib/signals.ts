/**
 * Graceful shutdown: SIGINT/SIGTERM abort a signal so long runs finish the work in flight and
 * exit 0; a second signal exits at once.
 * @module
 */
import { log } from "./log.ts";

/** An AbortSignal aborted by the first SIGINT or SIGTERM. Call the returned dispose when done. */
export function shutdownSignal(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handler = () => {
    if (controller.signal.aborted) {
      log("warn", "second signal: exiting now");
      Deno.exit(130);
    }
    log("info", "stopping: finishing the batch in flight (signal again to exit at once)");
    controller.abort();
  };
  for (const s of signals) Deno.addSignalListener(s, handler);
  return {
    signal: controller.signal,
    dispose: () => {
      for (const s of signals) Deno.removeSignalListener(s, handler);
    },
  };
}

/** Runs `work` with SIGINT/SIGTERM turned into an abort signal (the batch in flight finishes). */
export async function untilSignal<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const shutdown = shutdownSignal();
  try {
    return await work(shutdown.signal);
  } finally {
    shutdown.dispose();
  }
}
