/**
 * One writer per folder: a lock file holding the writer's PID and host name, created exclusively. A lock whose
 * process is gone (killed, crashed) on this host is stale and taken over, said so; a live one — or one held on
 * another host, whose process cannot be checked from here — is a one-line error naming the holder (exit 7).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { RetroError } from "./errors.ts";
import { tmpPathFor } from "./fsx.ts";
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
  return parseLock(fs.readFileSync(file, "utf8"));
}

function parseLock(text: string): { pid: number; pidText: string; host: string } {
  const [pidText, host = os.hostname()] = text.trim().split("@");
  return { pid: Number(pidText), pidText, host };
}

/** Block the thread for `ms` milliseconds (the callers are synchronous: a constructor, a lock loop). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Remove a stale lock file, atomically with respect to other processes doing the same: the takeover runs under a
 * second, short-lived lock (a folder, created exclusively), and the lock file is removed only if it still holds
 * the dead writer's text. Without it, of three processes finding the same stale lock, one could remove the lock
 * another had just taken, and two would write at once. A takeover folder left by a process killed mid-takeover
 * (older than 30 s) is removed.
 */
function removeStaleLock(file: string, staleText: string): void {
  const guard = `${file}.takeover`;
  for (let i = 0; ; i++) {
    try {
      fs.mkdirSync(guard);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      try {
        if (Date.now() - fs.statSync(guard).mtimeMs > 30_000) fs.rmdirSync(guard);
      } catch {
        /* gone meanwhile */
      }
      if (i > 600) throw new RetroError("busy", `${file}: another process is taking over this lock; retry`);
      sleepSync(5);
    }
  }
  try {
    let now: string | null = null;
    try {
      now = fs.readFileSync(file, "utf8");
    } catch {
      /* removed by the process before us */
    }
    if (now === staleText) fs.rmSync(file, { force: true });
  } finally {
    fs.rmdirSync(guard);
  }
}

/**
 * Create `file` holding `text`, or fail with EEXIST: the text is written to a private temp file that is then
 * hard-linked into place, so the lock never exists empty (an empty lock read by another process looked stale,
 * and two processes held the lock at once, 1 round in 10 in CI).
 */
function createWithContent(file: string, text: string): void {
  const tmp = tmpPathFor(file);
  fs.writeFileSync(tmp, text);
  try {
    fs.linkSync(tmp, file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw e;
    fs.writeFileSync(file, text, { flag: "wx" }); // a file system without hard links: exclusive create
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Take the folder's lock (the folder is created); returns the release function (also run at exit). */
export function lockFolder(dir: string, what: string): () => void {
  const release = tryLockFolder(dir, what);
  if (release) return release;
  throw new RetroError("usage", `${dir}: could not take the lock ${path.join(dir, LOCK_FILE)}`);
}

/**
 * Take the folder's lock, or say who holds it: throws "busy" for a live holder (or another host's), returns null
 * when the lock changed hands too often to take (a crowd of processes), else the release function.
 */
export function tryLockFolder(dir: string, what: string): (() => void) | null {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const mine = `${process.pid}@${os.hostname()}`;
      createWithContent(file, mine);
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
      let text: string;
      try {
        text = fs.readFileSync(file, "utf8");
      } catch {
        continue; // released meanwhile: try again
      }
      if (!text.trim()) {
        // a lock file without a holder: written by a version that created it empty first, or by a process killed
        // in between. Young, it is being written (wait); old, it is stale
        let age = 0;
        try {
          age = Date.now() - fs.statSync(file).mtimeMs;
        } catch {
          continue;
        }
        if (age < 2000) {
          sleepSync(5);
          continue;
        }
      }
      const { pid, pidText, host } = parseLock(text);
      if (host !== os.hostname())
        throw new RetroError(
          "busy",
          `${dir} is locked by process ${pidText} on host ${host} (${what}); if that process is gone, remove ${file}`,
        );
      if (pid === process.pid) throw new RetroError("usage", `${dir}: this process already writes it (${what})`);
      if (Number.isInteger(pid) && pid > 0 && alive(pid))
        throw new RetroError("busy", `${dir} is in use by process ${pid} (${what}); wait for it or stop it`);
      log(`${dir}: taking over the lock of process ${pid}, which is gone`);
      removeStaleLock(file, text); // stale: its writer is gone
    }
  }
  return null;
}

/** The live process on this host that holds the folder's lock, or null (no lock, a stale one, another host's). */
export function lockHolder(dir: string): number | null {
  const file = path.join(dir, LOCK_FILE);
  let holder: { pid: number; host: string };
  try {
    holder = readLock(file);
  } catch {
    return null; // no lock (or released while looking)
  }
  const { pid, host } = holder;
  return host === os.hostname() && Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
}
