// The Hugging Face side of `nla bench tokenize`: encodes the same documents with the Rust
// tokenizers library (npm tokenizers) on one thread and prints one JSON line:
//   {"tokens": N, "seconds": best, "docs": D, "checksum": C, "version": "..."}
// The caller sets RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false (one core).
//   node tests/tools/bench_tokenize_hf.mjs tokenizer.json docs.jsonl repeats
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.resolve(here, '../../third_party/npm/node_modules');
const require = createRequire(import.meta.url);
const { Tokenizer } = require(path.join(modules, 'tokenizers'));
const version = JSON.parse(fs.readFileSync(path.join(modules, 'tokenizers/package.json'), 'utf8')).version;

const [tokenizerPath, docsPath, repeatsArg] = process.argv.slice(2);
const repeats = Math.max(1, parseInt(repeatsArg || '3', 10));
const tok = Tokenizer.fromFile(tokenizerPath);
const docs = fs.readFileSync(docsPath, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));

const options = { addSpecialTokens: false };
let encodings = await tok.encodeBatch(docs, options);  // warm-up: fills the word cache, as ours is
let best = Infinity;
for (let r = 0; r < repeats; ++r) {
  const start = process.hrtime.bigint();
  encodings = await tok.encodeBatch(docs, options);
  best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
}
// Checksum of the id sequence (same formula in bench_tokenize.cpp), outside the timing.
let tokens = 0;
let checksum = 0;
for (const encoding of encodings) {
  for (const id of encoding.getIds()) {
    checksum = (Math.imul(checksum, 31) + id) >>> 0;
    ++tokens;
  }
}
console.log(JSON.stringify({ tokens, seconds: best, docs: docs.length, checksum, version }));
