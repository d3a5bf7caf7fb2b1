/** `deno task demo`: the whole pipeline on the local stack in one command. */
import { runDemo } from "./demo_steps.ts";
import { exitWith } from "../lib/errors.ts";

if (import.meta.main) Deno.exit(await exitWith(() => runDemo(), Deno.args));
