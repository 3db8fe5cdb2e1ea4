/**
 * The `retro` command line, one file per command (src/cli/*.ts). Every failure caused by input prints one
 * line and a stable exit code (src/util/errors.ts).
 */
import * as fs from "node:fs";
import { Command } from "commander";
import { RetroError } from "../util/errors.ts";
import { registerCorpus, registerDb } from "./db.ts";
import { registerTrain } from "./train.ts";
import { registerEval } from "./eval.ts";
import { registerGenerate } from "./generate.ts";
import { registerParity } from "./parity.ts";
import { registerPlot } from "./plot.ts";
import { registerDemo } from "./demo.ts";

const program = new Command();
program.name("retro").description("Retro / InstructRetro: retrieval-augmented language models in TypeScript").showHelpAfterError();
registerDb(program);
registerCorpus(program);
registerTrain(program);
registerEval(program);
registerGenerate(program);
registerParity(program);
registerPlot(program);
registerDemo(program);

// RETRO_RUSAGE=FILE: write this process's peak RSS and CPU time to FILE at exit (used by bench:db)
if (process.env.RETRO_RUSAGE) {
  const file = process.env.RETRO_RUSAGE;
  process.on("exit", () => {
    const u = process.resourceUsage();
    fs.writeFileSync(file, JSON.stringify({ maxRssMiB: u.maxRSS / 1024, userS: u.userCPUTime / 1e6, systemS: u.systemCPUTime / 1e6 }));
  });
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof RetroError) {
    process.stderr.write(`retro: error: ${e.message}\n`);
    process.exit(e.code);
  }
  throw e;
}
