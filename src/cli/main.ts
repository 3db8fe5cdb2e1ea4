/**
 * The `retro` command line, one file per command (src/cli/*.ts). Every failure caused by input prints one
 * line and a stable exit code (src/util/errors.ts).
 */
import * as fs from "node:fs";
import { CommanderError } from "commander";
import * as os from "node:os";
import * as path from "node:path";
import { ExitCode, RetroError, fromSystemError } from "../util/errors.ts";
import { buildProgram } from "./program.ts";

const program = buildProgram();

// RETRO_RUSAGE=FILE: write this process's peak RSS and CPU time to FILE at exit (used by bench:db)
if (process.env.RETRO_RUSAGE) {
  const file = process.env.RETRO_RUSAGE;
  process.on("exit", () => {
    const u = process.resourceUsage();
    fs.writeFileSync(
      file,
      JSON.stringify({ maxRssMiB: u.maxRSS / 1024, userS: u.userCPUTime / 1e6, systemS: u.systemCPUTime / 1e6 }),
    );
  });
}

// No stack trace reaches a user: input errors are one line with their exit code (src/util/errors.ts); file-system
// refusals (permission, disk full, …) likewise; anything else is a bug: one line, the trace written to a file.
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : ExitCode.usage); // commander printed the message
  const known = e instanceof RetroError ? e : fromSystemError(e);
  if (known) {
    process.stderr.write(`retro: error: ${known.message}\n`);
    process.exit(known.code);
  }
  const file = path.join(os.tmpdir(), `retro-crash-${process.pid}.log`);
  let saved = "";
  try {
    fs.writeFileSync(file, `retro ${process.argv.slice(2).join(" ")}\n${(e as Error)?.stack ?? String(e)}\n`);
    saved = ` (trace: ${file}; please report it)`;
  } catch {
    saved = "";
  }
  process.stderr.write(`retro: internal error: ${(e as Error)?.message ?? String(e)}${saved}\n`);
  process.exit(ExitCode.internal);
}
