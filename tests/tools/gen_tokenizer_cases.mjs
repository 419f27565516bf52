// Generates tests/data/tokenizer/qwen2_hf_cases.jsonl: encode and decode cases for the
// Qwen2.5 tokenizer, produced by Hugging Face's tokenizers (npm tokenizers, the Rust
// library) so that the C++ tokenizer can be checked against it case by case.
//
//   node tests/tools/gen_tokenizer_cases.mjs [tokenizer.json] [out.jsonl]
//
// Seeded PRNG (mulberry32): the same inputs give the same file. Each line is one of
//   {"kind":"encode","category":...,"text":...,"ids":[...],"decoded":...}   decoded = decode(ids, false)
//   {"kind":"decode","category":...,"ids":[...],"skip_special":b,"decoded":...}
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const require = createRequire(import.meta.url);
const { Tokenizer } = require(path.join(root, 'third_party/npm/node_modules/tokenizers'));

const tokenizerPath = process.argv[2] || path.join(root, 'models/tokenizer.json');
const outPath = process.argv[3] || path.join(root, 'tests/data/tokenizer/qwen2_hf_cases.jsonl');
const tok = Tokenizer.fromFile(tokenizerPath);

// ---- seeded randomness
let seed = 0x5eed2024;
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (n) => Math.floor(rand() * n);
const pick = (list) => list[randInt(list.length)];
const repeat = (n, f) => Array.from({ length: n }, (_, i) => f(i));

// ---- material
const words = ('the of and to in is was that for it with as his on be at by had are but from or have an they which ' +
  'one you were all her she there would their we him been has when who will no more if out so up said what its ' +
  'about than into them can only other time new some could these two may first then do any like my now over such ' +
  'our man me even most made after also did many off before must well back through years where much your way down ' +
  'should because long each just state people those too how little good world very still own see men work ' +
  'activation vector residual stream autoencoder tokenizer transformer attention gradient explanation concept ' +
  'internationalization antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis').split(' ');
const punct = ['.', ',', '!', '?', ';', ':', '...', ' -', ' --', '—', '(', ')', '"', "'", '“', '”', '«', '»', '¿', '¡'];
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D",
  "'Ll", "'lL", "'Re", "'vE", "’s", "’ll", "'ſ", "'K", "'\u212a"];
const cjk = ['我们今天去公园散步。', '人工智能正在改变世界，', '东京は日本の首都です。', 'ひらがなとカタカナ',
  '한국어 텍스트입니다.', '안녕하세요 세계', '中文，標點符號！「引號」', '数字１２３と全角ＡＢＣ', '漢字仮名交じり文',
  '㈎㉠ 한글 자모 각', '龍が如く', '𠀀𠀁𡃁 (CJK Ext B)', '繁體中文與简体中文'];
const emoji = ['😀', '🎉', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇯🇵', '🇺🇸🇬🇧', '1️⃣', '❤️', '🧑🏿‍💻', '👩‍❤️‍💋‍👨',
  '🫠', '🦀', '🐍', '🤖', '✨', '☕', '🫶🏻', '🏴‍☠️', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '©️', '™'];
const accented = ['café', 'naïve', 'résumé', 'Ångström', 'jalapeño', 'Zürich', 'São Paulo', 'Tiếng Việt', 'Ελληνικά',
  'über', 'façade', 'Dvořák', 'Łódź', 'crème brûlée', 'Ṩ', 'ḍ̇', 'q̣̇', 'ǖ', 'Å', 'ﬁ', 'Ω', 'Å', '가각'];
const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>', '<|object_ref_end|>',
  '<|box_start|>', '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_start|>', '<|vision_end|>',
  '<|vision_pad|>', '<|image_pad|>', '<|video_pad|>', '<tool_call>', '</tool_call>', '<|fim_prefix|>',
  '<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>'];
const partialSpecials = ['<|im_sta', '<|endoftext', '|im_end|>', '<|im_start', '< |im_start|>', '<|IM_START|>',
  '<|im_start||>', '<<|im_end|>>', '<tool_call', 'tool_call>', '<|', '|>', '<||>', '<|endoftext|'];
const codeSnippets = [
  'int main(int argc, char** argv) {\n  return 0;\n}\n',
  'def f(x):\n    return x ** 2  # square\n\n\nprint(f(3))\n',
  'for (let i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}',
  'if __name__ == "__main__":\n    main()\n',
  '#include <vector>\nstd::vector<int> v{1, 2, 3};\n',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name;',
  '$ ls -la /usr/local/bin | grep -v "^d" > out.txt 2>&1',
  '{"key": "value", "list": [1, 2.5, -3e10], "nested": {"a": null}}',
  '<div class="row"><span id=\'x\'>&nbsp;&amp;</span></div>',
  'x = lambda a, b: (a**b) % 1_000_000_007\n',
  'fn main() -> Result<(), Box<dyn Error>> { Ok(()) }',
  '    // indented comment\r\n    let y = x?;\r\n',
  '\t\tcase 0x1F: return \'\\n\';\n',
  'https://example.com/path/to/page?query=1&lang=en#section-2',
  'git commit -m "Fix: don\'t crash on empty input (#1234)"',
  'a_b_c = __init__.__dict__["__module__"]',
  '===== ----- ***** ##### ~~~~~ ^^^^^',
];
const numbers = ['0', '7', '42', '3.14159', '1,234,567', '1 000 000', '2024-11-24', '12:30:45', '+1 (555) 123-4567',
  '0xDEADBEEF', '1e-9', '−273.15', '½', '²³', '١٢٣٤', '१२३', '١٢٣', 'Ⅻ', '①②③', '１２３４５', '00000000001', '99.9%',
  '$1,000.00', '€5', '¥300', '3/4', 'v1.2.3-rc.4', '10^6', '٣٫١٤', '๑๒๓'];
const spaceChars = [' ', ' ', ' ', '\t', '\n', '\r\n', '\r', '\u00a0', '\u3000', '\u2003', '\u200b', '\u180e', '\u2028',
  '\u0085', '\u000b', '\u000c', '\u202f'];

function prose() {
  const n = 3 + randInt(25);
  let out = '';
  for (let i = 0; i < n; ++i) {
    let w = pick(words);
    const r = rand();
    if (r < 0.1) w = w[0].toUpperCase() + w.slice(1);
    else if (r < 0.13) w = w.toUpperCase();
    out += (i ? ' ' : '') + w;
    if (rand() < 0.12) out += pick(contractions);
    if (rand() < 0.15) out += pick(punct);
  }
  return out + pick(['.', '!', '?', '', '\n']);
}
function whitespaceRun() {
  return repeat(1 + randInt(6), () => pick(spaceChars)).join('');
}
function randomCodepoint() {
  const planes = [[0x20, 0x7f], [0xa0, 0x800], [0x800, 0xd800], [0xe000, 0x10000], [0x10000, 0x20000],
    [0x20000, 0x30000], [0x30000, 0x32000], [0xe0000, 0xe0200], [0xf0000, 0xf0100], [0x1f300, 0x1fb00],
    [0x300, 0x370], [0x1100, 0x1200], [0xac00, 0xd7a4], [0x0, 0x20]];
  const [lo, hi] = pick(planes);
  let cp = lo + randInt(hi - lo);
  if (cp >= 0xd800 && cp < 0xe000) cp = 0x41;  // no lone surrogates: not valid UTF-8
  return String.fromCodePoint(cp);
}
const randomUnicode = () => repeat(1 + randInt(20), () => (rand() < 0.15 ? ' ' : randomCodepoint())).join('');

const marker = '\u320e';
const avPrompt = 'You are a meticulous AI researcher conducting an important investigation into activation vectors ' +
  'from a language model. Your overall task is to describe the semantic content of that activation vector.\n\n' +
  'We will pass the vector enclosed in <concept> tags into your context. You must then produce an explanation for ' +
  'the vector, enclosed within <explanation> tags. The explanation consists of 2-3 text snippets describing that ' +
  'vector.\n\nHere is the vector:\n\n<concept>' + marker + '</concept>\n\nPlease provide an explanation.';
const chat = (user) => '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.' +
  '<|im_end|>\n<|im_start|>user\n' + user + '<|im_end|>\n<|im_start|>assistant\n';

const generators = {
  prose: [160, prose],
  code: [100, () => pick(codeSnippets) + (rand() < 0.5 ? pick(codeSnippets) : '')],
  numbers: [90, () => repeat(1 + randInt(5), () => pick(numbers)).join(pick([' ', '', ', ', '-', '\n']))],
  whitespace: [120, () => {
    const parts = repeat(1 + randInt(4), () => (rand() < 0.5 ? whitespaceRun() : pick(words)));
    return (rand() < 0.3 ? whitespaceRun() : '') + parts.join('') + (rand() < 0.5 ? whitespaceRun() : '');
  }],
  cjk: [80, () => repeat(1 + randInt(3), () => (rand() < 0.7 ? pick(cjk) : pick(words))).join(pick(['', ' ', '\n']))],
  emoji: [80, () => repeat(1 + randInt(6), () => (rand() < 0.6 ? pick(emoji) : pick(words))).join(pick(['', ' ']))],
  accents: [90, () => {
    const w = repeat(1 + randInt(4), () => pick(accented)).join(' ');
    const form = pick(['NFC', 'NFD', 'NFKC', 'NFKD', 'none']);
    return form === 'none' ? w : w.normalize(form);
  }],
  contractions: [70, () => repeat(1 + randInt(4), () => pick(words) + pick(contractions)).join(pick([' ', '', '\n']))],
  specials: [100, () => repeat(2 + randInt(5), () => {
    const r = rand();
    if (r < 0.35) return pick(specials);
    if (r < 0.55) return pick(partialSpecials);
    if (r < 0.7) return whitespaceRun();
    return pick(words);
  }).join(pick(['', ' ', '\n']))],
  marker: [40, () => {
    const r = rand();
    if (r < 0.3) return chat(avPrompt);
    if (r < 0.5) return avPrompt;
    if (r < 0.75) return 'Summary of the following text: <text>' + prose() + '</text> <summary>';
    return '<concept>' + repeat(1 + randInt(3), () => marker).join(pick(['', ' '])) + '</concept>' + pick(['', ' ', '\n']);
  }],
  random_unicode: [220, randomUnicode],
  long: [40, () => {
    const r = rand();
    if (r < 0.2) return repeat(300 + randInt(1500), () => pick(['a', 'b', 'e', 'z'])).join('');
    if (r < 0.35) return repeat(200 + randInt(2000), () => String(randInt(10))).join('');
    if (r < 0.5) return ' '.repeat(100 + randInt(3000)) + pick(['', 'x', '\n']);
    if (r < 0.6) return pick(words) + '\n'.repeat(50 + randInt(500)) + pick(words);
    if (r < 0.7) return repeat(100 + randInt(500), () => pick(['-', '=', '*', '#', '!'])).join('');
    if (r < 0.8) return Buffer.from(repeat(200, () => randInt(256))).toString('base64');
    if (r < 0.9) return pick(words).repeat(50 + randInt(200));
    return repeat(100 + randInt(300), () => pick(cjk)).join('');
  }],
  mixed: [180, () => repeat(2 + randInt(6), () => {
    const names = ['prose', 'code', 'numbers', 'whitespace', 'cjk', 'emoji', 'accents', 'contractions', 'specials',
      'random_unicode'];
    return generators[pick(names)][1]();
  }).join(pick(['', ' ', '\n', '\t']))],
};

const fixed = ['', ' ', '  ', '\n', '\r\n', '\t', 'a', 'A', "'", "'s", "'S", "I'M", "YOU'LL", "it's", "It'S", 'Hello world',
  'Hello  world', 'Hello world ', ' Hello world', 'hello\n\nworld\n', 'x \n y', 'a\r\n\r\nb', '   \n   ',
  '<|im_start|>', '<|im_start|>user\nhi<|im_end|>\n', ' <|endoftext|> ', '<|endoftext|><|endoftext|>',
  'a<|im_end|>b', '\u320e', '<concept>\u320e</concept>', 'e\u0301', '\u00e9', 'A\u030a', '\u1100\u1161\u11a8',
  '\u212b', '\u2126', '\u180e', 'a\u180eb', '  \u180e  ', '\u00a0\u00a0x', '\u3000\u3000', 'ſ', "'ſ", "'\u212a",
  'ÀÉÎÕÜ', '123456789', '1.2.3', '$$$', '...', '!!!???', '\u0000', '\u0001\u0002', '\u007f', '\uffff', '\ufeff',
  '\u{10ffff}', '\u{e0001}', '\u{1f600}\u{1f600}', ' '.repeat(17), '\t'.repeat(9), '\n'.repeat(7) + 'x',
  'trailing spaces   ', 'trailing tab\t', 'trailing newline\n'];

// Code points where Unicode versions matter. unknownToNormalizer: marks and composition
// partners newer than tokenizers' NFC tables (src/tokenizer/normalizer.cpp lists the same
// ones); newLettersNumbers: a few of the Unicode 15-16 letters and numbers that Debian's
// PCRE2 lacks (src/tokenizer/unicode_delta.inc).
const unknownToNormalizer = [0x7fd, 0x898, 0x899, 0x89a, 0x89b, 0x89c, 0x89d, 0x89e, 0x89f, 0x8ca, 0x8cb, 0x8cc, 0x8cd, 0x8ce, 0x8cf, 0x8d0, 0x8d1, 0x8d2, 0x8d3, 0x9fe, 0xc3c, 0xd3b, 0xd3c, 0xeba, 0x1715, 0x1abf, 0x1ac0, 0x1ac1, 0x1ac2, 0x1ac3, 0x1ac4, 0x1ac5, 0x1ac6, 0x1ac7, 0x1ac8, 0x1ac9, 0x1aca, 0x1acb, 0x1acc, 0x1acd, 0x1ace, 0x1df6, 0x1df7, 0x1df8, 0x1df9, 0x1dfa, 0xa82c, 0x10d24, 0x10d25, 0x10d26, 0x10d27, 0x10eab, 0x10eac, 0x10efd, 0x10efe, 0x10eff, 0x10f46, 0x10f47, 0x10f48, 0x10f49, 0x10f4a, 0x10f4b, 0x10f4c, 0x10f4d, 0x10f4e, 0x10f4f, 0x10f50, 0x10f82, 0x10f83, 0x10f84, 0x10f85, 0x11070, 0x1133b, 0x1145e, 0x11839, 0x1183a, 0x11930, 0x11938, 0x1193d, 0x1193e, 0x11943, 0x119e0, 0x11a34, 0x11a47, 0x11a99, 0x11d42, 0x11d44, 0x11d45, 0x11d97, 0x11f41, 0x11f42, 0x16ff0, 0x16ff1, 0x1e08f, 0x1e130, 0x1e131, 0x1e132, 0x1e133, 0x1e134, 0x1e135, 0x1e136, 0x1e2ae, 0x1e2ec, 0x1e2ed, 0x1e2ee, 0x1e2ef, 0x1e4ec, 0x1e4ed, 0x1e4ee, 0x1e4ef];
const newLettersNumbers = [0x1c89, 0xa7cb, 0x105c0, 0x10d4a, 0x11380, 0x11bc0, 0x11f04, 0x13460, 0x143fa, 0x16100,
  0x16d40, 0x1e5d0, 0x2ebf0, 0x31350, 0x323af, 0x10d40, 0x116d0, 0x11f50, 0x16130, 0x1ccf0, 0x1d2c0, 0x1e5f1];

// ---- encode cases
const cases = [];
const encodeTexts = fixed.map((text) => ['fixed', text]);
for (const [category, [count, gen]] of Object.entries(generators))
  for (let i = 0; i < count; ++i) encodeTexts.push([category, gen()]);
for (const cp of unknownToNormalizer) {
  const c = String.fromCodePoint(cp);
  encodeTexts.push(['nfc_versions', '\u0301' + c + ' e\u0316' + c + '\u0301 ' + c + '\u0316x']);
}
encodeTexts.push(['nfc_versions', '\u{11935}\u{11930} \u{11938} a\u{11935}\u0301\u{11930}']);
for (const cp of newLettersNumbers) {
  const c = String.fromCodePoint(cp);
  encodeTexts.push(['unicode_versions', "'" + c + ' $' + c + c + ' a' + c + '1 ' + c + "'s"]);
}
for (const [category, text] of encodeTexts) {
  const encoding = await tok.encode(text, null, { addSpecialTokens: false });
  const ids = Array.from(encoding.getIds());
  cases.push({ kind: 'encode', category, text, ids, decoded: await tok.decode(ids, false) });
}

// ---- decode cases (invalid UTF-8 from split multibyte characters, special tokens, random ids)
const byteChars = (() => {  // GPT-2 bytes_to_unicode
  const bs = [];
  for (let b = 0x21; b <= 0x7e; ++b) bs.push(b);
  for (let b = 0xa1; b <= 0xac; ++b) bs.push(b);
  for (let b = 0xae; b <= 0xff; ++b) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; ++b) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const map = new Array(256);
  bs.forEach((b, i) => { map[b] = String.fromCodePoint(cs[i]); });
  return map;
})();
const byteId = (b) => tok.tokenToId(byteChars[b]);
const bytesOf = (s) => Array.from(Buffer.from(s, 'utf8'));
const decodeCase = async (category, ids, skipSpecial = false) =>
  cases.push({ kind: 'decode', category, ids, skip_special: skipSpecial, decoded: await tok.decode(ids, skipSpecial) });

for (const s of [...emoji, ...cjk.slice(0, 4), 'é', '€', '𝄞', 'ſ']) {
  const bytes = bytesOf(s);
  await decodeCase('split_multibyte', bytes.map(byteId));
  await decodeCase('split_multibyte', bytes.slice(0, Math.max(1, bytes.length - 1)).map(byteId));
  await decodeCase('split_multibyte', bytes.slice(1).map(byteId));
  await decodeCase('split_multibyte', bytes.slice(0, 1).concat(bytesOf('a'), bytes.slice(1)).map(byteId));
}
for (let i = 0; i < 60; ++i) await decodeCase('random_bytes', repeat(1 + randInt(12), () => byteId(randInt(256))));
for (let i = 0; i < 30; ++i)
  await decodeCase('high_bytes', repeat(1 + randInt(8), () => byteId(0x80 + randInt(128))));
const vocabSize = tok.getVocabSize(true);
for (let i = 0; i < 60; ++i) {
  const ids = repeat(1 + randInt(10), () => (rand() < 0.15 ? 151643 + randInt(22) : randInt(151643)));
  await decodeCase('random_ids', ids, false);
  if (i % 3 === 0) await decodeCase('random_ids_skip_special', ids, true);
}
if (vocabSize !== 151665) throw new Error(`unexpected vocab size ${vocabSize}`);

fs.mkdirSync(path.dirname(outPath), { recursive: true });
fs.writeFileSync(outPath, cases.map((c) => JSON.stringify(c)).join('\n') + '\n');
console.log(`wrote ${cases.length} cases to ${outPath}`);

// ---- a tiny tokenizer in both merges formats, with added tokens of every flag: for the
// unit tests of merges loading and of added-token matching (tiny_hf_cases.jsonl).
const tinyDir = path.dirname(outPath);
const tinyVocab = {};
byteChars.forEach((c, b) => { tinyVocab[c] = b; });
const tinyMerges = [['Ġ', 't'], ['h', 'e'], ['Ġt', 'he'], ['i', 'n'], ['Ġ', 'in'], ['Ġ', 'Ġ'], ['ĠĠ', 'ĠĠ'], ['c', 'a']];
tinyMerges.forEach(([a, b], i) => { tinyVocab[a + b] = 256 + i; });
const tinyAdded = [
  { id: 264, content: '<|special|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
  { id: 265, content: '<lstrip>', single_word: false, lstrip: true, rstrip: false, normalized: false, special: true },
  { id: 266, content: '<rstrip>', single_word: false, lstrip: false, rstrip: true, normalized: false, special: false },
  { id: 267, content: 'word', single_word: true, lstrip: false, rstrip: false, normalized: false, special: false },
  { id: 268, content: 'cafe\u0301', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
  { id: 269, content: '<both>', single_word: false, lstrip: true, rstrip: true, normalized: false, special: true },
];
const qwen = JSON.parse(fs.readFileSync(tokenizerPath, 'utf8'));
const tinyJson = (merges) => JSON.stringify({
  version: '1.0', truncation: null, padding: null, added_tokens: tinyAdded,
  normalizer: { type: 'NFC' }, pre_tokenizer: qwen.pre_tokenizer, post_processor: qwen.post_processor,
  decoder: qwen.decoder,
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
    fuse_unk: false, byte_fallback: false, vocab: tinyVocab, merges },
}, null, 1) + '\n';
const tinyStrings = path.join(tinyDir, 'tiny_merges_strings.json');
const tinyPairs = path.join(tinyDir, 'tiny_merges_pairs.json');
fs.writeFileSync(tinyStrings, tinyJson(tinyMerges.map(([a, b]) => a + ' ' + b)));
fs.writeFileSync(tinyPairs, tinyJson(tinyMerges));
const tinyTexts = ['the in thin', ' the  the   the', 'a <lstrip> b', 'x   <lstrip>', '<lstrip>', '\t\n<lstrip>z',
  'a <rstrip>   b', '<rstrip>\n\n', 'a word b', 'awordb', 'word', 'word.', '_word', 'wordy', 'ü word é', 'wordword',
  'café', 'cafe\u0301', 'le café noir', 'Cafe\u0301', '<both>', '  <both>  z', 'a<both>b', '<lstrip><lstrip>',
  ' <rstrip> <lstrip> ', '<|special|><|special|>', '<|special', 'x <|special|> y', '<both> <both>', 'word<both>word',
  ' word ', 'a\u00a0<lstrip>', '<rstrip>\u3000x', '日本 word', 'caféword', 'word café'];
const tinyCases = [];
for (const file of [tinyStrings, tinyPairs]) {
  const tiny = Tokenizer.fromFile(file);
  for (const text of tinyTexts) {
    const ids = Array.from((await tiny.encode(text, null, { addSpecialTokens: false })).getIds());
    tinyCases.push({ file: path.basename(file), text, ids, decoded: await tiny.decode(ids, false),
      decoded_skip_special: await tiny.decode(ids, true) });
  }
}
const tinyCasesPath = path.join(tinyDir, 'tiny_hf_cases.jsonl');
fs.writeFileSync(tinyCasesPath, tinyCases.map((c) => JSON.stringify(c)).join('\n') + '\n');
console.log(`wrote ${tinyCases.length} cases to ${tinyCasesPath}`);
