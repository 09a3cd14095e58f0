#!/usr/bin/env node
// gen_tok_unicode.js TOKENIZER.JSON > libcore/tok_unicode.c
//
// Reads the character classes \p{L}, \p{N} and \s off the reference
// implementation (HF tokenizers through @anush008/tokenizers, whose
// Oniguruma decides them; its Unicode version is newer than utf8proc's,
// PCRE2's or Python's here) and writes them as sorted code-point ranges.
// Each code point c is classified from where the Qwen Split regex puts piece
// boundaries in three probes ("1" is always a piece of its own):
//   "a" c "1"   one piece "ac"          <=> c is a letter
//   "!" c "1"   one piece "!c"          <=> c is a letter or "other"
//   c "x" "1"   one piece "cx"          <=> c is not a number (L, other, \s)
// so: L; other = !L && joined("!c"); \s = !L && !other && joined("cx");
// N = the rest (\r and \n are \s and known).
//
// Rust regex's \w (what an added token with single_word checks beside it)
// is read off the same way: with <tool_call> made single_word, c is a word
// character when "c<tool_call>" does not yield the token.
//
// It also lists the code points HF's NFC does not know (its normalisation
// tables are older than utf8proc's): marks whose combining class it takes as
// 0, and the new parts of canonical compositions it does not make.  NFC
// treats them as opaque starters (tok.c), as HF does.  Found by comparing HF
// with ICU's String.prototype.normalize on "x" U+0345 c, "x" c U+0334 (a
// reordering shows a nonzero class) and on NFD(c).
'use strict';
const path = require('path');
const {Tokenizer} = require(path.join(__dirname, '../ref/node_modules/@anush008/tokenizers'));
const tok = Tokenizer.fromFile(process.argv[2]);
const pt = tok.getPreTokenizer();

function starts(cps) {          // set of char offsets where a piece starts
    const s = new Set();
    for (const [, [a]] of pt.preTokenizeString(String.fromCodePoint(...cps))) s.add(a);
    return s;
}
const cls = new Uint8Array(0x110000);   // 1 L, 2 N, 3 space, 0 other
const CHUNK = 4096;
for (let lo = 0; lo < 0x110000; lo += CHUNK) {
    const cs = [];
    for (let c = lo; c < lo + CHUNK; c++) if (c < 0xD800 || c > 0xDFFF) cs.push(c);
    const a = [], b = [], x = [];
    for (const c of cs) a.push(0x61, c, 0x31);
    for (const c of cs) b.push(0x21, c, 0x31);
    for (const c of cs) x.push(c, 0x78, 0x31);
    const sa = starts(a), sb = starts(b), sx = starts(x);
    cs.forEach((c, i) => {
        const L = !sa.has(3 * i + 1), O = !sb.has(3 * i + 1), J = !sx.has(3 * i + 1);
        cls[c] = L ? 1 : O ? 0 : J ? 3 : 2;
    });
}
for (const c of [0x0A, 0x0D]) cls[c] = 3;

const spec = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
for (const t of spec.added_tokens) if (t.content === '<tool_call>') t.single_word = true;
const sw = Tokenizer.fromString(JSON.stringify(spec)), swId = sw.tokenToId('<tool_call>');
const word = new Uint8Array(0x110000);
async function readWords() {
    for (let lo = 0; lo < 0x110000; lo += CHUNK) {
        const cs = [];
        for (let c = lo; c < lo + CHUNK; c++) if (c < 0xD800 || c > 0xDFFF) cs.push(c);
        const encs = await sw.encodeBatch(cs.map(c => String.fromCodePoint(c) + '<tool_call>'), {addSpecialTokens: false});
        encs.forEach((e, i) => { if (!e.getIds().includes(swId)) word[cs[i]] = 1; });
    }
}

const nrm = tok.getNormalizer();
const opaque = new Set(), known = new Set();
for (let lo = 0; lo < 0x110000; lo += CHUNK) {
    const cs = [];
    for (let c = lo; c < lo + CHUNK; c++) if ((c < 0xD800 || c > 0xDFFF) && c) cs.push(c);
    const pr = [];
    for (const c of cs) { const ch = String.fromCodePoint(c); pr.push('x\u0345' + ch, 'x' + ch + '\u0334'); }
    const h = nrm.normalizeString(pr.join('\0')).split('\0');
    cs.forEach((c, i) => {
        const same = h[2 * i] === pr[2 * i].normalize('NFC') && h[2 * i + 1] === pr[2 * i + 1].normalize('NFC');
        if (!same) opaque.add(c);
        else if (h[2 * i] !== pr[2 * i] || h[2 * i + 1] !== pr[2 * i + 1]) known.add(c);   // a mark HF reorders
    });
}
for (let c = 1; c < 0x110000; c++) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    const ch = String.fromCodePoint(c), d = ch.normalize('NFD');
    if (d === ch || nrm.normalizeString(d) === d.normalize('NFC')) continue;
    opaque.add(c);
    for (const p of d) if (!known.has(p.codePointAt(0))) opaque.add(p.codePointAt(0));
}
for (const c of opaque) cls[c] |= 4;

function ranges(k) {
    const r = [];
    for (let c = 0; c < 0x110000; c++) {
        if (k === 8 ? !word[c] : (k === 4 ? cls[c] & 4 : cls[c] & 3) !== k) continue;
        if (r.length && r[r.length - 1][1] === c - 1) r[r.length - 1][1] = c; else r.push([c, c]);
    }
    return r;
}
function table(name, r) {
    const lines = [];
    for (let i = 0; i < r.length; i += 6)
        lines.push('    ' + r.slice(i, i + 6).map(([a, b]) =>
            `{0x${a.toString(16).toUpperCase()}, 0x${b.toString(16).toUpperCase()}}`).join(', ') + ',');
    return `const uint32_t ${name}[][2] = {\n${lines.join('\n')}\n};\nconst int ${name}_n = ${r.length};\n`;
}
readWords().then(() => process.stdout.write(`/* tok_unicode.c — the character classes of the Qwen pre-tokenizer regex
 * (\\p{L}, \\p{N}, \\s) exactly as HF tokenizers' Oniguruma sees them, the code points
 * its NFC does not know, and Rust regex's \\w (added tokens' single_word), as
 * inclusive code-point ranges.  Generated by tests/tools/gen_tok_unicode.js
 * from the reference implementation; do not edit. */
#include <stdint.h>

#include "tok_int.h"

${table('qw_tok_uc_letter', ranges(1))}
${table('qw_tok_uc_number', ranges(2))}
${table('qw_tok_uc_space', ranges(3))}
${table('qw_tok_uc_nfc_opaque', ranges(4))}
${table('qw_tok_uc_word', ranges(8))}`));
