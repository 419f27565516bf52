// Greedy continuations from llama.cpp (through node-llama-cpp, built by
// tests/tools/setup_llama_cpp.sh) for token-id prompts: the reference of the parity test
// and of `nla bench generate`. All prompts run as parallel sequences of one context, so
// llama.cpp batches them as it does for a server.
//
//   node llama_greedy.mjs --gguf model.gguf --request request.json [--threads N]
// request.json: {"prompts": [[ids], ...], "max_new_tokens": N}
// stdout: {"tokens": [[ids], ...], "seconds": wall time of the generation, "prefill_seconds": ...}
import path from "node:path";
import fs from "node:fs";
import {pathToFileURL, fileURLToPath} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const llamaDir = process.env.NLA_LLAMA_DIR ?? path.resolve(here, "../../third_party/llama");
const {getLlama, LlamaLogLevel} = await import(
    pathToFileURL(path.join(llamaDir, "node_modules/node-llama-cpp/dist/index.js")).href);

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, word, i, all) => {
    if (word.startsWith("--")) pairs.push([word.slice(2), all[i + 1]]);
    return pairs;
}, []));
const request = JSON.parse(fs.readFileSync(args.request, "utf8"));
const threads = Number(args.threads ?? 2);

const llama = await getLlama("lastBuild", {gpu: false, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: args.gguf, gpuLayers: 0});
const longest = Math.max(...request.prompts.map((p) => p.length));
const context = await model.createContext({
    sequences: request.prompts.length,
    contextSize: request.prompts.length * (longest + request.max_new_tokens + 8),
    batchSize: Math.max(512, request.prompts.length * longest),
    threads,
});

const sequences = request.prompts.map(() => context.getSequence());

async function run(sequence, prompt, newTokens) {
    await sequence.clearHistory();
    const out = [];
    // temperature 0: greedy. No stop tokens: the cap ends every sequence.
    for await (const token of sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
        out.push(token);
        if (out.length >= newTokens) break;
    }
    return out;
}

let start = process.hrtime.bigint();
await Promise.all(request.prompts.map((p, i) => run(sequences[i], p, 1)));
const prefillSeconds = Number(process.hrtime.bigint() - start) / 1e9;
start = process.hrtime.bigint();
const tokens = await Promise.all(request.prompts.map((p, i) => run(sequences[i], p, request.max_new_tokens)));
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
process.stdout.write(JSON.stringify({tokens, seconds, prefill_seconds: prefillSeconds}) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
