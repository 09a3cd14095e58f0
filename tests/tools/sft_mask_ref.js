#!/usr/bin/env node
// sft_mask_ref.js TOKENIZER.json RENDERED.jsonl — the reference for SFT loss
// masks: for each {"name", "text"} line (a conversation as
// jinja_render.js renders it), the ids HF tokenizers gives the text and
// transformers' assistant mask over them: the assistant spans are found in
// the text itself (from after each "<|im_start|>assistant\n" through the
// next "<|im_end|>"), and a token is in when its offsets overlap a span
// (what char_to_token does for return_assistant_tokens_mask).  Prints two
// lines per case: the ids, then the mask as 0/1 digits.
'use strict';
const fs = require('fs');
const path = require('path');
const {Tokenizer} = require(path.join(__dirname, '../ref/node_modules/@anush008/tokenizers'));

const [tokPath, file] = process.argv.slice(2);
const tok = Tokenizer.fromFile(tokPath);
const open = '<|im_start|>assistant\n', close = '<|im_end|>';

async function main() {
    const out = [];
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        const c = JSON.parse(line);
        if (c.error) throw new Error(c.name + ': ' + c.error);
        const text = c.text;
        const spans = [];   // in code points, as the offsets are
        const cp = i => Array.from(text.slice(0, i)).length;
        for (let at = text.indexOf(open); at >= 0; at = text.indexOf(open, at + 1)) {
            const s = at + open.length, e = text.indexOf(close, s) + close.length;
            spans.push([cp(s), cp(e)]);
        }
        const enc = await tok.encode(text, null, {addSpecialTokens: false});
        const mask = enc.getOffsets().map(([a, b]) => spans.some(([s, e]) => a < e && s < b) ? 1 : 0);
        out.push(enc.getIds().join(' '), mask.join(''));
    }
    process.stdout.write(out.map(l => l + '\n').join(''));
}
main().catch(e => { process.stderr.write(String(e) + '\n'); process.exit(1); });
