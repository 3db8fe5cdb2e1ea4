/**
 * What stands between the network and the model: the API key check, the redaction of what a response or a log
 * line must not disclose (absolute paths, process ids), and the loopback test for the updates route.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import * as path from "node:path";

/**
 * Does the `Authorization` header carry `Bearer KEY`? Compared in constant time: both sides are hashed first, so
 * neither the key's length nor a prefix of it leaks through the time a wrong guess takes.
 */
export function keyMatches(authorization: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(authorization ?? "");
  const given = createHash("sha256")
    .update(m ? m[1].trim() : "")
    .digest();
  const want = createHash("sha256").update(key).digest();
  return timingSafeEqual(given, want) && m !== null;
}

/**
 * A message fit for a client or a log: each absolute path becomes its last component ("database /srv/x/db is
 * locked" → "database db is locked"), a process id "another process". The messages of the one error table
 * name paths for a local user; a remote one learns nothing about the server's file system from them.
 */
export function redact(message: string): string {
  return message
    .replace(/(?<![\w.:/])\/(?:[^\s/'"`:,;()[\]]+\/)*[^\s/'"`:,;()[\]]*/g, (p) => path.basename(p) || "/")
    .replace(/\b(?:process|pid|PID)\s+\d+/g, "another process")
    .replace(/\b\d+@[\w.-]+\b/g, "another process");
}

/** Is `host` an address only this machine reaches (so that an open updates route is not on the network)? */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
