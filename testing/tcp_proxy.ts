/**
 * A TCP proxy on 127.0.0.1 for the bench and the fault tests: bytes pass untouched (TLS stays end
 * to end) and in order, each chunk optionally held for a fixed delay in each direction (the round
 * trip of a database across a network, on the local stack). A test can also hold the server's
 * replies back and then cut every connection: the client's last request reached the server, which
 * acted on it (a COMMIT, say), but the client never hears how it went.
 * @module
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

/** A running proxy: where to connect, what to do to its connections, how to stop it. */
export interface TcpProxy {
  port: number;
  /** From now on the server's bytes are kept from the clients (until `cut`). */
  holdReplies(): void;
  /** Ends every connection open now, both sides at once; new ones pass again. */
  cut(): void;
  close(): Promise<void>;
}

/** Forwards what `from` sends to `to`, each chunk `delayMs` later, in order, unless `held()`. */
function forward(from: Socket, to: Socket, delayMs: number, held: () => boolean): void {
  const queue: { due: number; chunk: Uint8Array }[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    if (held()) return; // kept until the connection is cut
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.due <= now) to.write(queue.shift()!.chunk);
    if (queue.length > 0) timer = setTimeout(flush, queue[0]!.due - now);
  };
  from.on("data", (chunk: Uint8Array) => {
    if (delayMs === 0 && queue.length === 0 && !held()) {
      to.write(chunk);
      return;
    }
    queue.push({ due: performance.now() + delayMs, chunk });
    timer ??= setTimeout(flush, delayMs);
  });
  from.on("end", () => {
    const ended = () => {
      if (to.destroyed) return;
      if (queue.length === 0) to.end();
      else setTimeout(ended, delayMs || 10);
    };
    ended();
  });
}

/**
 * Starts a proxy to `host`:`port` on a free port of 127.0.0.1, adding `delayMs` each way (a
 * round trip of twice that; 0 passes bytes on at once).
 */
export function startTcpProxy(host: string, port: number, delayMs = 0): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let holding = false;
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host, port });
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const socket of pair) {
      socket.setNoDelay(true);
      socket.on("error", end);
      socket.on("close", end);
    }
    forward(client, upstream, delayMs, () => false);
    forward(upstream, client, delayMs, () => holding);
  });
  const cut = () => {
    for (const [client, upstream] of [...pairs]) {
      client.destroy();
      upstream.destroy();
    }
    holding = false;
  };
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      resolve({
        port: typeof address === "object" && address ? address.port : 0,
        holdReplies: () => {
          holding = true;
        },
        cut,
        close: () =>
          new Promise<void>((done) => {
            cut();
            server.close(() => done());
          }),
      });
    });
  });
}
