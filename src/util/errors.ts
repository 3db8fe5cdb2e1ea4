/**
 * User-facing errors: every failure caused by bad input is a RetroError with a stable exit code,
 * so that the CLI prints one clear line (no stack trace) and scripts can branch on the code.
 */
export type ErrorKind = "usage" | "notFound" | "badInput" | "corrupt" | "mismatch" | "busy" | "io" | "internal";

/**
 * The one error table (openai-node's `APIError.generate` as the model): each kind of failure, the exit code the CLI
 * ends with, and the HTTP status and OpenAI error type the server answers with.
 */
export const ERROR_KINDS: Readonly<Record<ErrorKind, { exit: number; http: number; type: string; meaning: string }>> = {
  usage: { exit: 2, http: 400, type: "invalid_request_error", meaning: "bad flags, config or request values" },
  notFound: { exit: 3, http: 404, type: "not_found_error", meaning: "a path (or a served resource) that does not exist" },
  badInput: { exit: 4, http: 400, type: "invalid_request_error", meaning: "corpus or data that cannot be read (empty, malformed, not UTF-8)" },
  corrupt: { exit: 5, http: 500, type: "server_error", meaning: "an on-disk artefact that fails its checks (truncated, checksum, foreign format)" },
  mismatch: { exit: 6, http: 409, type: "invalid_request_error", meaning: "artefacts that do not belong together (tokenizer, chunk length, dimension)" },
  busy: { exit: 7, http: 503, type: "server_error", meaning: "the folder is being written by another process (retry later)" },
  io: { exit: 8, http: 500, type: "server_error", meaning: "the file system refused: permission, read-only, disk full, a file in the way" },
  internal: { exit: 70, http: 500, type: "server_error", meaning: "a bug: one line on stderr, the full trace written to a file it names" },
};

/** exit codes by kind (scripts branch on them) */
export const ExitCode = Object.fromEntries(Object.entries(ERROR_KINDS).map(([k, v]) => [k, v.exit])) as Record<ErrorKind, number>;
export type ExitCodeName = ErrorKind;

export class RetroError extends Error {
  readonly code: number;
  constructor(readonly kind: ErrorKind, message: string) {
    super(message);
    this.name = "RetroError";
    this.code = ERROR_KINDS[kind].exit;
  }
  /** the HTTP status the server answers this error with */
  get status(): number {
    return ERROR_KINDS[this.kind].http;
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
