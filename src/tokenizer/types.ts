/** The one interface every tokenizer implements (the factory is tokenizer.ts). */
export interface Tokenizer {
  readonly id: string;
  readonly vocabSize: number;
  /** end-of-document id, also the padding token of short chunks */
  readonly eod: number;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
  /** the bytes of one token, where the tokenizer knows them (a token may hold part of a UTF-8 character) */
  tokenBytes?(id: number): Uint8Array | undefined;
}
