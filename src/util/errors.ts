/**
 * User-facing errors: every failure caused by bad input is a RetroError with a stable exit code,
 * so that the CLI prints one clear line (no stack trace) and scripts can branch on the code.
 */
export const ExitCode = {
  usage: 2, // bad flags or config values
  notFound: 3, // a path that does not exist
  badInput: 4, // corpus or data that cannot be read (empty, malformed, not UTF-8)
  corrupt: 5, // an on-disk artefact that fails its checks (truncated, checksum, foreign format)
  mismatch: 6, // artefacts that do not belong together (tokenizer, chunk length, dimension)
  busy: 7, // the folder is being written by another process (its lock file names it)
  io: 8, // the file system refused: permission denied, read-only, disk full, a file where a folder is needed
  internal: 70, // a bug: one line on stderr, the full trace written to a file it names
} as const;
export type ExitCodeName = keyof typeof ExitCode;

export class RetroError extends Error {
  readonly code: number;
  constructor(kind: ExitCodeName, message: string) {
    super(message);
    this.name = "RetroError";
    this.code = ExitCode[kind];
  }
}

/** Node's file-system errors as RetroErrors (what the user can act on), or null for anything else. */
export function fromSystemError(e: unknown): RetroError | null {
  const err = e as NodeJS.ErrnoException;
  if (!err || typeof err.code !== "string" || !err.syscall) return null;
  const where = err.path ? `${err.path}: ` : "";
  const what: Record<string, [ExitCodeName, string]> = {
    ENOENT: ["notFound", "no such file or folder"],
    ENOTDIR: ["io", "a file is in the way where a folder is needed"],
    EISDIR: ["io", "is a folder, a file is needed"],
    EEXIST: ["io", err.syscall === "mkdir" ? "a file is in the way where a folder is needed" : "already exists"],
    EACCES: ["io", "permission denied"],
    EPERM: ["io", "operation not permitted"],
    EROFS: ["io", "read-only file system"],
    ENOSPC: ["io", "no space left on the device (free some and re-run: finished work is kept)"],
    EDQUOT: ["io", "disk quota exceeded (free some and re-run: finished work is kept)"],
    EMFILE: ["io", "too many open files"],
  };
  const m = what[err.code];
  return m ? new RetroError(m[0], `${where}${m[1]} (${err.syscall})`) : null;
}
