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
  usage: {
    exit: 2,
    http: 400,
    type: "invalid_request_error",
    meaning:
      "bad flags, config or request values; a folder that is not a database given to `db build --out`; a model or " +
      "batch too large for the memory",
  },
  notFound: {
    exit: 3,
    http: 404,
    type: "not_found_error",
    meaning:
      "a path that does not exist (with the install command for an offline corpus that is not installed), or a " +
      "served model or route",
  },
  badInput: {
    exit: 4,
    http: 400,
    type: "invalid_request_error",
    meaning: "unreadable input: an empty corpus, non-UTF-8 text, malformed JSONL",
  },
  corrupt: {
    exit: 5,
    http: 500,
    type: "server_error",
    meaning:
      "a corrupt artefact: a truncated or checksum-failing block, token file (SHA-256), index file (size + CRC-32), " +
      "safetensors, neighbour ids outside the chunk table, a damaged SWORD module",
  },
  mismatch: {
    exit: 6,
    http: 409,
    type: "invalid_request_error",
    meaning:
      "artefacts that do not belong together: tokenizer (also of the same size), chunk length, embedder dimension ≠ " +
      "index dimension",
  },
  busy: {
    exit: 7,
    http: 503,
    type: "server_error",
    meaning:
      "the folder is being written by another live process (its PID lock file names it; a dead writer's lock is " +
      "taken over): retry later",
  },
  io: {
    exit: 8,
    http: 500,
    type: "server_error",
    meaning:
      "the file system refused: permission denied, read-only, disk full (re-run after freeing space: finished work " +
      "is kept), a file where a folder is needed",
  },
  internal: {
    exit: 70,
    http: 500,
    type: "server_error",
    meaning: "a bug: one line on stderr, the full trace written to a file it names",
  },
};

/** exit codes by kind (scripts branch on them) */
export const ExitCode = Object.fromEntries(Object.entries(ERROR_KINDS).map(([k, v]) => [k, v.exit])) as Record<
  ErrorKind,
  number
>;
export type ExitCodeName = ErrorKind;

export class RetroError extends Error {
  readonly code: number;
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "RetroError";
    this.code = ERROR_KINDS[kind].exit;
  }
  /** the HTTP status the server answers this error with */
  get status(): number {
    return ERROR_KINDS[this.kind].http;
  }
}

/**
 * Node's file-system errors, and allocations too large for the memory (a typed array of a batch or model the
 * settings ask for), as RetroErrors (what the user can act on), or null for anything else.
 */
export function fromSystemError(e: unknown): RetroError | null {
  if (
    e instanceof RangeError &&
    /Invalid typed array length|Array buffer allocation failed|Array buffer/.test(e.message)
  )
    return new RetroError(
      "usage",
      `the settings ask for more memory than this process can allocate (${e.message}): lower --batch, --seq or ` +
        `the model size`,
    );
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
