/** The one interface every tokenizer implements (the factory is tokenizer.ts). */
export interface Tokenizer {
  readonly id: string;
  readonly vocabSize: number;
  /** end-of-document id, also the padding token of short chunks */
  readonly eod: number;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
}
