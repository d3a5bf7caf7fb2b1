/**
 * A TCP proxy on 127.0.0.1 that holds every chunk for a fixed delay in each direction: the
 * round trip of a database across a network (a managed service in another zone, say) on the
 * local stack, for the bench. Bytes pass untouched (TLS stays end to end), in order.
 * @module
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

/** A running proxy: where to connect, and how to stop it. */
export interface DelayProxy {
  port: number;
  close(): Promise<void>;
}

/** Forwards what `from` sends to `to`, each chunk `delayMs` later, in order. */
function delayed(from: Socket, to: Socket, delayMs: number): void {
  const queue: { due: number; chunk: Uint8Array }[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.due <= now) to.write(queue.shift()!.chunk);
    if (queue.length > 0) timer = setTimeout(flush, queue[0]!.due - now);
  };
  from.on("data", (chunk: Uint8Array) => {
    queue.push({ due: performance.now() + delayMs, chunk });
    timer ??= setTimeout(flush, delayMs);
  });
  from.on("end", () => {
    const ended = () => queue.length === 0 ? to.end() : setTimeout(ended, delayMs);
    ended();
  });
}

/**
 * Starts a proxy to `host`:`port` adding `delayMs` each way (a round trip of twice that) on a
 * free port of 127.0.0.1.
 */
export function startDelayProxy(host: string, port: number, delayMs: number): Promise<DelayProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host, port });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.setNoDelay(true);
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
      socket.on("close", () => sockets.delete(socket));
    }
    delayed(client, upstream, delayMs);
    delayed(upstream, client, delayMs);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      resolve({
        port: typeof address === "object" && address ? address.port : 0,
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
