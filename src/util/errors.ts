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
