#!/usr/bin/env node
// hf_tok.js — the reference: HF tokenizers (Rust) through @anush008/tokenizers.
//
//   hf_tok.js encode TOKENIZER.json [FILE.jsonl]   one line of ids per document
//   hf_tok.js decode TOKENIZER.json [FILE]
//                                    lines of ids -> one line per line: the
//                                    JSON array [decoded, decoded skipping
//                                    special tokens]
//   hf_tok.js bench TOKENIZER.json FILE.jsonl [OUT]
//                                    encode with encodeBatch (1000 documents
//                                    a call), print "seconds bytes" (the
//                                    time inside the calls) to stderr, ids
//                                    to OUT
// Documents are JSONL lines with a "text" field.  Set RAYON_NUM_THREADS=1
// for one thread.
'use strict';
const fs = require('fs');
const path = require('path');
const {Tokenizer} = require(path.join(__dirname, '../ref/node_modules/@anush008/tokenizers'));

const [mode, tokPath, file, extra] = process.argv.slice(2);
if (!mode || !tokPath) {
    process.stderr.write('usage: hf_tok.js encode|decode|bench TOKENIZER.json [FILE]\n');
    process.exit(2);
}
const tok = Tokenizer.fromFile(tokPath);
const lines = fs.readFileSync(file || 0, 'utf8').split('\n');
if (lines.length && lines[lines.length - 1] === '') lines.pop();
const opts = {addSpecialTokens: false};

async function main() {
    if (mode === 'encode') {
        const texts = lines.map(l => JSON.parse(l).text);
        const out = [];
        for (let i = 0; i < texts.length; i += 256) {
            const encs = await tok.encodeBatch(texts.slice(i, i + 256), opts);
            for (const e of encs) out.push(e.getIds().join(' '));
        }
        process.stdout.write(out.map(l => l + '\n').join(''));
    } else if (mode === 'decode') {
        const out = [];
        for (const l of lines) {
            const ids = l.trim() ? l.trim().split(' ').map(Number) : [];
            out.push(JSON.stringify([await tok.decode(ids, false), await tok.decode(ids, true)]));
        }
        process.stdout.write(out.map(l => l + '\n').join(''));
    } else if (mode === 'bench') {
        const texts = lines.map(l => JSON.parse(l).text);
        const bytes = texts.reduce((s, t) => s + Buffer.byteLength(t, 'utf8'), 0);
        const ids = [];
        let sec = 0;
        for (let i = 0; i < texts.length; i += 1000) {
            const t0 = process.hrtime.bigint();
            const encs = await tok.encodeBatch(texts.slice(i, i + 1000), opts);
            for (const e of encs) ids.push(e.getIds());
            sec += Number(process.hrtime.bigint() - t0) / 1e9;
        }
        process.stderr.write(`${sec} ${bytes}\n`);
        if (extra) fs.writeFileSync(extra, ids.map(x => x.join(' ') + '\n').join(''));
    } else {
        process.stderr.write(`hf_tok.js: unknown mode '${mode}'\n`);
        process.exit(2);
    }
}
main().catch(e => { process.stderr.write(`hf_tok.js: ${e}\n`); process.exit(1); });
