/** Progress bars with ETA and rate on stderr (cli-progress), silent when not a TTY unless forced. */
import cliProgress from "cli-progress";

export interface Progress {
  /** `status`: a short live note shown after the bar (e.g. loss, tokens/s) */
  update(done: number, status?: string): void;
  increment(n?: number): void;
  stop(): void;
}

/** `start`: items already done before this process (a resumed job), left out of the rate */
export function progress(label: string, total: number, unit = "items", start = 0): Progress {
  const quiet = process.env.RETRO_QUIET === "1";
  if (quiet || !process.stderr.isTTY) {
    // non-TTY: one line every ~10 % so that logs stay readable and still show an ETA
    const t0 = Date.now();
    let done = 0;
    let nextReport = total / 10;
    let note = "";
    const report = () => {
      if (quiet) return;
      const s = (Date.now() - t0) / 1000;
      const rate = (done - start) / Math.max(s, 1e-9);
      const eta = rate > 0 ? (total - done) / rate : 0;
      process.stderr.write(
        `${label}: ${done}/${total} ${unit} ${rate.toFixed(rate < 10 ? 2 : 0)}/s ETA ` +
          `${eta.toFixed(0)}s${note ? " | " + note : ""}\n`,
      );
    };
    return {
      update(d, status) {
        done = d;
        if (status !== undefined) note = status;
        if (done >= nextReport) {
          report();
          nextReport = done + total / 10;
        }
      },
      increment(n = 1) {
        this.update(done + n);
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate}/s | ETA {eta_formatted}{status}`,
      hideCursor: true,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  let done = 0;
  bar.start(total, start, { rate: "0", status: "" });
  let note = "";
  return {
    update(d, status) {
      done = d;
      if (status !== undefined) note = status;
      const rate = (d - start) / Math.max((Date.now() - t0) / 1000, 1e-9);
      bar.update(d, { rate: rate.toFixed(rate < 10 ? 2 : 0), status: note ? ` | ${note}` : "" });
    },
    increment(n = 1) {
      this.update(done + n);
    },
    stop() {
      bar.stop();
    },
  };
}

export function log(msg: string): void {
  if (process.env.RETRO_QUIET !== "1") process.stderr.write(msg + "\n");
}

/** Something the user should know even in quiet mode (input skipped, a setting overridden). */
export function warn(msg: string): void {
  process.stderr.write(`retro: warning: ${msg}\n`);
}
