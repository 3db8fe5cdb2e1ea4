/**
 * One writer per folder: a lock file holding the writer's PID and host name, created exclusively. A lock whose
 * process is gone (killed, crashed) on this host is stale and taken over, said so; a live one — or one held on
 * another host, whose process cannot be checked from here — is a one-line error naming the holder (exit 7).
 */
import * as fs from "node:fs";
import * as os from "node:os";
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

/** A lock file's holder: "PID@host" (a lock from before host names were recorded holds the PID alone). */
function readLock(file: string): { pid: number; pidText: string; host: string } {
  const [pidText, host = os.hostname()] = fs.readFileSync(file, "utf8").trim().split("@");
  return { pid: Number(pidText), pidText, host };
}

/** Take the folder's lock (the folder is created); returns the release function (also run at exit). */
export function lockFolder(dir: string, what: string): () => void {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const mine = `${process.pid}@${os.hostname()}`;
      fs.writeFileSync(file, mine, { flag: "wx" });
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        process.off("exit", release);
        try {
          if (fs.readFileSync(file, "utf8") === mine) fs.rmSync(file, { force: true });
        } catch {
          /* already gone */
        }
      };
      process.on("exit", release);
      return release;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const { pid, pidText, host } = readLock(file);
      if (host !== os.hostname())
        throw new RetroError(
          "busy",
          `${dir} is locked by process ${pidText} on host ${host} (${what}); if that process is gone, remove ${file}`,
        );
      if (pid === process.pid) throw new RetroError("usage", `${dir}: this process already writes it (${what})`);
      if (Number.isInteger(pid) && pid > 0 && alive(pid))
        throw new RetroError("busy", `${dir} is in use by process ${pid} (${what}); wait for it or stop it`);
      log(`${dir}: taking over the lock of process ${pid}, which is gone`);
      fs.rmSync(file, { force: true }); // stale: its writer is gone
    }
  }
  throw new RetroError("usage", `${dir}: could not take the lock ${file}`);
}

/** The live process on this host that holds the folder's lock, or null (no lock, a stale one, another host's). */
export function lockHolder(dir: string): number | null {
  const file = path.join(dir, LOCK_FILE);
  if (!fs.existsSync(file)) return null;
  const { pid, host } = readLock(file);
  return host === os.hostname() && Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
}
