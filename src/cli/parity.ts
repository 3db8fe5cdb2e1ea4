/** `retro parity`: the engine against a PyTorch dump. */
import { Option, type Command } from "commander";
import { runParity } from "../model/parity.ts";
import { RetroError } from "../util/errors.ts";
import { loadEngine, type EngineKind } from "../engine/native.ts";

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
      const within = report.grads.filter((g) => g.rel <= 1e-4).length;
      console.log(
        `gradients ${within}/${report.grads.length} within 1e-4; worst gradient ${report.gradWorst} rel error ` +
          `${report.gradRel.toExponential(2)}`,
      );
      for (const g of report.grads)
        if (o.all || g.rel > 1e-4)
          console.log(
            `  ${g.name.padEnd(32)} rel ${g.rel.toExponential(2)}  (max |grad| ${g.maxAbs.toExponential(2)})`,
          );
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
