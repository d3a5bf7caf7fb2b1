import assert from "node:assert/strict";
import { join } from "node:path";
import { credsFromOriginal, readCreds, writeCreds } from "./creds.ts";
import { resolveConnection } from "./config.ts";
import { AppError } from "../errors.ts";

const SECRET = "canary-orig-7c1e";
const ORIGINAL_URI =
  `postgres://avnadmin:${SECRET}@pg-x.example.com:11339/defaultdb?sslmode=require`;

/** Writes `content` as a creds file (mode 0600 unless told) in a fresh temp folder. */
async function credsFile(content: unknown, mode = 0o600): Promise<string> {
  const path = join(await Deno.makeTempDir({ prefix: "tickets-creds-" }), "creds.json");
  await Deno.writeTextFile(path, JSON.stringify(content), { mode });
  await Deno.chmod(path, mode);
  return path;
}

/** Runs `fn` with console.error collected; returns what it wrote. */
function stderrOf(fn: () => void): string[] {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  try {
    fn();
  } finally {
    console.error = original;
  }
  return lines;
}

Deno.test("readCreds() maps the original auth_setup.py list onto the creds, with one notice", async () => {
  const original = [{
    KAFKA_HOST: "kafka-x.example.com",
    KAFKA_PORT: "11341",
    POSTGRES_URI: ORIGINAL_URI,
  }];
  const path = await credsFile(original);
  const before = await Deno.readTextFile(path);
  const beforeMtime = (await Deno.stat(path)).mtime?.getTime();
  let creds;
  const first = stderrOf(() => (creds = readCreds(path)));
  assert.deepEqual(creds, {
    kafka: { hostname: "kafka-x.example.com", port: 11341, securityProtocol: "SSL" },
    postgres: { uri: ORIGINAL_URI },
  });
  assert.equal(first.length, 1, `one notice line, got ${JSON.stringify(first)}`);
  assert.match(first[0]!, /original auth_setup\.py form/);
  assert.match(first[0]!, /run auth_setup/);
  assert.ok(!first[0]!.includes(SECRET), "the notice shows the password");
  const again = stderrOf(() => readCreds(path));
  assert.deepEqual(again, [], "the notice is said once per file and process");
  assert.equal(await Deno.readTextFile(path), before, "the file was rewritten");
  assert.equal((await Deno.stat(path)).mtime?.getTime(), beforeMtime);
});

Deno.test("readCreds() takes a numeric KAFKA_PORT and still reads the object form silently", async () => {
  const list = await credsFile([{
    KAFKA_HOST: "h.example.com",
    KAFKA_PORT: 9093,
    POSTGRES_URI: ORIGINAL_URI,
  }]);
  stderrOf(() => assert.equal(readCreds(list)?.kafka.port, 9093));
  const objectForm = join(await Deno.makeTempDir({ prefix: "tickets-creds-" }), "creds.json");
  await writeCreds(objectForm, {
    kafka: { hostname: "h.example.com", port: 1, securityProtocol: "PLAINTEXT" },
    postgres: { uri: "postgres://u@h.example.com/db" },
  });
  const said = stderrOf(() =>
    assert.equal(readCreds(objectForm)?.kafka.securityProtocol, "PLAINTEXT")
  );
  assert.deepEqual(said, []);
});

Deno.test("credsFromOriginal() names what is missing or wrong, never quoting the URI", () => {
  const bad: Array<[unknown[], RegExp]> = [
    [[], /list of 0 entries/],
    [[{ KAFKA_HOST: "a" }, { KAFKA_HOST: "b" }], /list of 2 entries/],
    [["text"], /list of 1 entries/],
    [
      [{ KAFKA_HOST: "h", KAFKA_PORT: "80a", POSTGRES_URI: ORIGINAL_URI }],
      /usable KAFKA_PORT$|usable KAFKA_PORT;/,
    ],
    [[{ KAFKA_PORT: 1, POSTGRES_URI: ORIGINAL_URI }], /KAFKA_HOST/],
    [[{ KAFKA_HOST: "h", KAFKA_PORT: 1 }], /POSTGRES_URI/],
  ];
  for (const [list, expected] of bad) {
    assert.throws(
      () => credsFromOriginal(list, "c.json"),
      (e) =>
        e instanceof AppError && e.code === "CREDS" && expected.test(e.message) &&
        !e.message.includes(SECRET),
      JSON.stringify(list),
    );
  }
});

Deno.test("resolveConnection() uses an original creds file with --cert-path, flags still win", async () => {
  const path = await credsFile([{
    KAFKA_HOST: "kafka-x.example.com",
    KAFKA_PORT: "11341",
    POSTGRES_URI: ORIGINAL_URI,
  }]);
  const env = { get: () => undefined };
  let connection;
  stderrOf(() => {
    assert.throws(
      () => resolveConnection({ creds: path }, { kafka: true, postgres: true }, env),
      /SSL needs a cert folder/,
    );
    connection = resolveConnection(
      { creds: path, "cert-path": "/certs", "kafka-portnumber": "2222" },
      { kafka: true, postgres: true },
      env,
    );
  });
  assert.deepEqual(connection!.kafka.brokers, ["kafka-x.example.com:2222"]);
  assert.equal(connection!.kafka.securityProtocol, "SSL");
  assert.equal(connection!.kafka.certPath, "/certs");
  assert.equal(connection!.postgresUri, ORIGINAL_URI);
});

Deno.test("readCreds() refuses an original creds file that others can read, naming chmod", async () => {
  const path = await credsFile(
    [{ KAFKA_HOST: "h", KAFKA_PORT: 1, POSTGRES_URI: ORIGINAL_URI }],
    0o644,
  );
  assert.throws(
    () => readCreds(path),
    (e) => e instanceof AppError && e.message.includes(`chmod 600 ${path}`),
  );
});
