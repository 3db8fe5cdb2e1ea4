/** `retro parity`: the engine against a PyTorch dump. */
import { Option, type Command } from "commander";
import { runParity } from "../model/parity.ts";
import { RetroError } from "../util/errors.ts";
import { loadEngine, type EngineKind } from "../engine/native.ts";
import { numFlag } from "./args.ts";

/** gradients smaller than this share of the model's largest are judged against it (see the action) */
const GRAD_FLOOR = 1e-4;

export function registerParity(program: Command): void {
  program
    .command("parity")
    .description(
      'check the engine against a PyTorch dump (torch_retro_step.py with "dump"): max relative error of loss, ' +
        "logits, gradients",
    )
    .argument("<dump>", "safetensors file written by the peer")
    .option("--config <json>", "model config as JSON, when the dump's metadata has none")
    .addOption(
      new Option("--engine <kind>", "engine build (default: RETRO_ENGINE or portable)").choices(["blas", "portable"]),
    )
    .option("--all", "print every gradient's error")
    .option(
      "--tol <x>",
      "largest relative error accepted (loss, logits, every gradient; a gradient under 1e-4 of the largest is " +
        "measured against 1e-4 of it): beyond it, exit 1",
      numFlag("--tol", { above: 0 }),
      1e-4,
    )
    .action((dump: string, o) => {
      const report = runParity(dump, {
        config: o.config ? parseConfigArg(o.config as string) : undefined,
        engine: loadEngine(o.engine as EngineKind | undefined),
      });
      const c = report.config;
      console.log(
        `dump      ${dump} (${report.peer}; ${c.model}, vocab ${c.vocab}, d ${c.d}, layers ` +
          `${c.layers}${c.model === "retro" ? `, cca ${c.cca_layers.join(",")}, gate ${c.gate}` : ""})`,
      );
      console.log(
        `loss      ours ${report.loss.ours.toFixed(7)}  theirs ${report.loss.theirs.toFixed(7)}  rel error ` +
          `${report.loss.rel.toExponential(2)}`,
      );
      console.log(`logits    max rel error ${report.logitsRel.toExponential(2)}`);
      const tol = o.tol as number;
      const within = report.grads.filter((g) => g.rel <= tol).length;
      console.log(
        `gradients ${within}/${report.grads.length} within ${tol}; worst gradient ${report.gradWorst} rel error ` +
          `${report.gradRel.toExponential(2)}`,
      );
      for (const g of report.grads)
        if (o.all || g.rel > tol)
          console.log(
            `  ${g.name.padEnd(32)} rel ${g.rel.toExponential(2)}  (max |grad| ${g.maxAbs.toExponential(2)})`,
          );
      // a gradient's error is judged against max(its own largest magnitude, GRAD_FLOOR × the model's largest
      // gradient): a tensor whose gradients are 1e-10 of the rest (a bias under a gate) sits at float32's floor
      const top = Math.max(...report.grads.map((g) => g.maxAbs));
      const judged = report.grads.map((g) => (g.rel * g.maxAbs) / Math.max(g.maxAbs, GRAD_FLOOR * top));
      const worst = Math.max(report.loss.rel, report.logitsRel, ...judged);
      if (!(worst <= tol)) {
        console.error(`parity failed: largest relative error ${worst.toExponential(2)} > --tol ${tol}`);
        process.exitCode = 1;
      }
    });
}

/** --config: inline JSON (bad JSON is a usage error, exit 2) */
function parseConfigArg(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new RetroError("usage", `--config is not valid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new RetroError("usage", "--config must be a JSON object");
  return v as Record<string, unknown>;
}
