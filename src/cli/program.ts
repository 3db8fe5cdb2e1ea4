/** The `retro` program: every command registered on one commander instance (run by main.ts; tests build their own). */
import { createRequire } from "node:module";
import { Command } from "commander";
import { registerCorpus, registerDb, registerExport } from "./db.ts";
import { registerTrain } from "./train.ts";
import { registerEval } from "./eval.ts";
import { registerGenerate } from "./generate.ts";
import { registerParity } from "./parity.ts";
import { registerPlot } from "./plot.ts";
import { registerDemo } from "./demo.ts";
import { registerServe } from "./serve.ts";

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("retro")
    .description("Retro / InstructRetro: retrieval-augmented language models in TypeScript")
    .showHelpAfterError();
  // commander's own errors (unknown option, missing argument) are usage errors, exit 2 (its default is 1);
  // set before the commands are added, so that they inherit it
  program.exitOverride();
  // src/cli/ and dist/cli/ both sit two folders below the package root
  program.version(
    (createRequire(import.meta.url)("../../package.json") as { version: string }).version,
    "-V, --version",
  );
  registerDb(program);
  registerCorpus(program);
  registerTrain(program);
  registerEval(program);
  registerGenerate(program);
  registerParity(program);
  registerPlot(program);
  registerDemo(program);
  registerServe(program);
  registerExport(program);
  return program;
}
