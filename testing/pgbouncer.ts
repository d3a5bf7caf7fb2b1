/**
 * A PgBouncer in front of the stack's PostgreSQL for the tests, as managed services offer it
 * (Aiven's connection pools): transaction pooling, few server connections, startup parameters it
 * does not know refused. Debian's package, installed by `dev/stack.sh up` with PostgreSQL.
 * @module
 */
import { join } from "node:path";
import { freePort, sh, stackInfo, waitFor } from "./testing.ts";

/** A running PgBouncer: the URI to reach the stack's database through it, and its end. */
export interface PgBouncer {
  uri: string;
  stop(): Promise<void>;
}

const BINARIES = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"];

/**
 * Starts PgBouncer on a free port of 127.0.0.1 (plain text there; TLS to PostgreSQL) in
 * transaction mode with `serverConnections` connections to the database, as the postgres user
 * when run as root (PgBouncer refuses root).
 */
export async function startPgBouncer(serverConnections = 2): Promise<PgBouncer> {
  const binary = BINARIES.find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
  if (!binary) {
    throw new Error(
      "PgBouncer is not installed: `bash dev/stack.sh up --postgres server` installs it",
    );
  }
  const target = new URL(stackInfo().postgresUri);
  const database = target.pathname.slice(1);
  const user = decodeURIComponent(target.username);
  const password = decodeURIComponent(target.password);
  const dir = await Deno.makeTempDir({ prefix: "tickets-pgbouncer-" });
  const port = freePort();
  const quoted = (text: string) => `"${text.replaceAll('"', '""')}"`;
  await Deno.writeTextFile(join(dir, "users.txt"), `${quoted(user)} ${quoted(password)}\n`, {
    mode: 0o600,
  });
  await Deno.writeTextFile(
    join(dir, "pgbouncer.ini"),
    `[databases]
${database} = host=${target.hostname} port=${target.port} dbname=${database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = plain
auth_file = ${join(dir, "users.txt")}
pool_mode = transaction
default_pool_size = ${serverConnections}
server_tls_sslmode = require
logfile = ${join(dir, "pgbouncer.log")}
`,
  );
  const root = Deno.uid() === 0;
  if (root) await sh(`chown -R postgres "${dir}"`);
  const ini = join(dir, "pgbouncer.ini");
  const child = new Deno.Command(root ? "runuser" : binary, {
    args: root ? ["-u", "postgres", "--", binary, ini] : [ini],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone already */ }
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await waitFor("PgBouncer to listen", async () => {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    }, 10_000);
  } catch (error) {
    const log = await Deno.readTextFile(join(dir, "pgbouncer.log")).catch(() => "");
    await stop();
    throw new Error(`${(error as Error).message}; its log: ${log.slice(-500)}`);
  }
  const uri = new URL(target);
  uri.port = String(port);
  uri.search = "?sslmode=disable";
  return { uri: uri.toString(), stop };
}
