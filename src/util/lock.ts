/**
 * One writer per folder: a lock file holding the writer's PID, created exclusively. A lock whose process is
 * gone (killed, crashed) is stale and taken over; a live one is a one-line error naming the PID.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RetroError } from "./errors.ts";
import { log } from "./progress.ts";

export const LOCK_FILE = ".lock";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Take the folder's lock (the folder is created); returns the release function (also run at exit). */
export function lockFolder(dir: string, what: string): () => void {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: "wx" });
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        process.off("exit", release);
        try {
          if (fs.readFileSync(file, "utf8") === String(process.pid)) fs.rmSync(file, { force: true });
        } catch {
          /* already gone */
        }
      };
      process.on("exit", release);
      return release;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(fs.readFileSync(file, "utf8").trim());
      if (pid === process.pid) throw new RetroError("usage", `${dir}: this process already writes it (${what})`);
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) throw new RetroError("busy", `${dir} is in use by process ${pid} (${what}); wait for it or stop it`);
      log(`${dir}: taking over the lock of process ${pid}, which is gone`);
      fs.rmSync(file, { force: true }); // stale: its writer is gone
    }
  }
  throw new RetroError("usage", `${dir}: could not take the lock ${file}`);
}
