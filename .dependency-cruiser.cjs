/**
 * The structure rule of retro-ts, checked in CI (`npm run check:structure`): no import cycles, and the rooms of src/
 * in pipeline order — a module may import from its own room and the rooms before it, never from one after it.
 * src/index.ts (the library's entry) and bin/ sit above every room.
 */
const ROOMS = [
  "util", // errors, files, numbers, progress: no knowledge of the pipeline
  "engine", // the native kernels and safetensors
  "tokenizer",
  "data", // corpora and the token store
  "embed", // chunk embedders
  "search", // the SearchIndex interface and its backends
  "db", // step 1: the retrieval database
  "prompt", // the instruction, QA and passage formats shared by sft, qa and serve
  "model", // GPT and Retro
  "train", // step 2 and 3: the run loop, evaluation
  "generate", // decoding with a KV cache and re-retrieval
  "sft", // step 4
  "qa", // step 5
  "serve",
  "integrations", // adapters for other libraries' interfaces (LangChain.js), each its own package entry point
  "demo",
  "cli",
];

const upward = ROOMS.map((room, i) => ({
  name: `no-upward-from-${room}`,
  comment: `src/${room}/ may import only from rooms before it: ${ROOMS.slice(0, i).join(", ") || "(none)"}`,
  severity: "error",
  from: { path: `^src/${room}/` },
  to: { path: `^src/(${ROOMS.slice(i + 1).join("|") || "$^"})/` },
}));

module.exports = {

  forbidden: [
    { name: "no-circular", comment: "an import cycle", severity: "error", from: {}, to: { circular: true } },
    {
      name: "no-unknown-room",
      comment: "every folder of src/ is a room named in .dependency-cruiser.cjs",
      severity: "error",
      from: { path: "^src/" },
      to: { path: `^src/(?!(${ROOMS.join("|")})/|index\\.ts$)` },
    },
    ...upward,
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^src/serve/web/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
  },
};
