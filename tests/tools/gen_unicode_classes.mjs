// Writes tests/data/tokenizer/hf_unicode_classes.json: the code points that Hugging Face
// tokenizers' Qwen2 pre-tokenizer treats as \p{L} and as \p{N}, as ranges. Its regex engine
// (Oniguruma) carries newer Unicode tables than Debian's PCRE2 (Unicode 14), so the C++
// pre-tokenizer adds the difference (src/tokenizer/unicode_delta.inc) and a test checks
// every code point against this file.
//   node tests/tools/gen_unicode_classes.mjs [tokenizer.json] [out.json]
// Probes, per code point c: "a"+c is one piece iff c is a letter; "$"+c is two pieces iff c
// is a number or white space (not a letter).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const require = createRequire(import.meta.url);
const { Tokenizer } = require(path.join(root, 'third_party/npm/node_modules/tokenizers'));
const tokenizerPath = process.argv[2] || path.join(root, 'models/tokenizer.json');
const outPath = process.argv[3] || path.join(root, 'tests/data/tokenizer/hf_unicode_classes.json');
const pre = Tokenizer.fromFile(tokenizerPath).getPreTokenizer();
const version = JSON.parse(fs.readFileSync(path.join(root, 'third_party/npm/node_modules/tokenizers/package.json'))).version;

const whiteSpace = new Set([0x9, 0xa, 0xb, 0xc, 0xd, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
  0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);
const letter = [], number = [];
const add = (ranges, cp) => {
  const last = ranges[ranges.length - 1];
  if (last && last[1] === cp - 1) last[1] = cp;
  else ranges.push([cp, cp]);
};
for (let cp = 0; cp < 0x110000; ++cp) {
  if (cp >= 0xd800 && cp < 0xe000) continue;
  const c = String.fromCodePoint(cp);
  if (pre.preTokenizeString('a' + c).length === 1) add(letter, cp);
  else if (!whiteSpace.has(cp) && pre.preTokenizeString('$' + c).length === 2) add(number, cp);
}
fs.writeFileSync(outPath, JSON.stringify({ tokenizers: version, letter, number }) + '\n');
console.log(`${letter.length} letter ranges, ${number.length} number ranges -> ${outPath}`);
