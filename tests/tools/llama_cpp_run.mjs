// Loads a GGUF file with llama.cpp itself (the node-llama-cpp package, its
// prebuilt CPU build) and prints one JSON object, for
// tests/integration/gguf_llama_cpp_test.cpp.
// Usage: node llama_cpp_run.mjs REQUEST.json
//   REQUEST: {"model": "m.gguf", "lora": "a.gguf" (optional),
//             "tokenize": ["text", ...],            -> "tokens": [[ids], ...]
//             "prompt_ids": [ids], "n_generate": 32 -> "generated": [ids] (greedy)
//             "score_ids": [ids]                    -> "top1": [id after each prefix]
//             "prompt_text": "...", "max_tokens": 128 -> "text": the greedy reply, up to the
//               end-of-generation token (llama.cpp tokenizes the prompt, special
//               tokens included, with BOS when the file says add_bos_token; the demo)}
// The package is imported from the node_modules folder named by
// LEMA_NODE_MODULES (scripts/fetch_test_assets.sh installs it there; ES
// modules ignore NODE_PATH); exit code 3 and {"error": ...} when it cannot
// be loaded.
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
let getLlama;
try {
  const modules = process.env.LEMA_NODE_MODULES;
  const entry = modules ? pathToFileURL(join(modules, "node-llama-cpp", "dist", "index.js")).href : "node-llama-cpp";
  ({getLlama} = await import(entry));
} catch (e) {
  console.log(JSON.stringify({error: "node-llama-cpp not available: " + e.message}));
  process.exit(3);
}

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: request.model, gpuLayers: 0});
const out = {};

if (request.tokenize) {
  // specialTokens = false: special-token text is tokenized as plain text.
  out.tokens = request.tokenize.map((text) => Array.from(model.tokenize(text, false)));
}

const contextSize = Math.max(64, (request.prompt_ids?.length ?? 0) + (request.n_generate ?? 0),
                             request.score_ids?.length ?? 0,
                             request.prompt_text !== undefined ? 4 * request.prompt_text.length + (request.max_tokens ?? 128) : 0) + 8;
async function withSequence(fn) {
  const context = await model.createContext({
    contextSize, batchSize: contextSize, threads: 2,
    ...(request.lora ? {lora: {adapters: [{filePath: request.lora, scale: 1}]}} : {}),
  });
  try {
    return await fn(context.getSequence());
  } finally {
    await context.dispose();
  }
}

if (request.prompt_ids) {
  // Step by step with controlledEvaluate rather than sequence.evaluate(),
  // which ends at an end-of-generation token: the comparison runs on past EOS.
  out.generated = await withSequence(async (sequence) => {
    const greedy = {generateNext: {token: true, options: {temperature: 0}}};
    const prompt = request.prompt_ids;
    const input = prompt.map((t, i) => (i === prompt.length - 1 ? [t, greedy] : t));
    let results = await sequence.controlledEvaluate(input);
    let next = results[prompt.length - 1].next.token;
    const ids = [];
    while (ids.length < request.n_generate) {
      ids.push(next);
      if (ids.length === request.n_generate) break;
      results = await sequence.controlledEvaluate([[next, greedy]]);
      next = results[0].next.token;
    }
    return ids;
  });
}

if (request.score_ids) {
  out.top1 = await withSequence(async (sequence) => {
    const input = request.score_ids.map((t) => [t, {generateNext: {token: true, options: {temperature: 0}}}]);
    const results = await sequence.controlledEvaluate(input);
    return results.map((r) => r?.next?.token ?? -1);
  });
}

if (request.prompt_text !== undefined) {
  out.text = await withSequence(async (sequence) => {
    const addBos = model.tokens.shouldPrependBosToken && model.tokens.bos != null;
    const prompt = [...(addBos ? [model.tokens.bos] : []), ...model.tokenize(request.prompt_text, true)];
    const greedy = {generateNext: {token: true, options: {temperature: 0}}};
    let results = await sequence.controlledEvaluate(prompt.map((t, i) => (i === prompt.length - 1 ? [t, greedy] : t)));
    let next = results[prompt.length - 1].next.token;
    const ids = [];
    while (ids.length < (request.max_tokens ?? 128) && !model.isEogToken(next)) {
      ids.push(next);
      results = await sequence.controlledEvaluate([[next, greedy]]);
      next = results[0].next.token;
    }
    return model.detokenize(ids);
  });
}

console.log(JSON.stringify(out));
await model.dispose();
await llama.dispose();
