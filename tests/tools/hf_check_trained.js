#!/usr/bin/env node
// hf_check_trained.js — HF tokenizers' BpeTrainer (Rust, through
// @anush008/tokenizers) as the reference for qw's BPE training.
//
//   hf_check_trained.js train OURS.json CORPUS OUT.json
//       Train HF's BpeTrainer on CORPUS with the normalizer and pre-tokenizer
//       of OURS.json (a tokenizer.json qw wrote), and save the result to
//       OUT.json.  The binding trains with BpeTrainer's defaults only
//       (vocab_size 30000, min_frequency 0, no special tokens, alphabet =
//       the characters seen); it reads CORPUS line by line, each line with
//       its '\n' one sequence.  Prints "seconds" to stderr.
//   hf_check_trained.js compare HF.json OURS.json
//       The merges of the shorter list must equal the other's first ones,
//       and the learned tokens (past each alphabet) must take the same ids
//       relative to the alphabet's end.  Prints
//       "N merges identical (hf H, ours Q)" or the first difference
//       (exit 1).  Also loads OURS.json with Tokenizer.fromFile.
//   hf_check_trained.js size HF.json
//       Prints the alphabet size and the number of merges of an HF result.
'use strict';
const fs = require('fs');
const path = require('path');
const {Tokenizer} = require(path.join(__dirname, '../ref/node_modules/@anush008/tokenizers'));

function die(msg) {
    process.stderr.write(`hf_check_trained.js: ${msg}\n`);
    process.exit(1);
}

const read = p => JSON.parse(fs.readFileSync(p, 'utf8'));
const pairs = m => m.merges.map(x => (Array.isArray(x) ? x : x.split(' ')).join(' '));
// Learned tokens in id order: the vocabulary past the alphabet (the first
// `alpha` ids, single characters).
function learned(m) {
    const byId = Object.entries(m.vocab).sort((a, b) => a[1] - b[1]).map(e => e[0]);
    let alpha = 0;
    while (alpha < byId.length && [...byId[alpha]].length === 1) alpha++;
    return {alpha, tokens: byId.slice(alpha)};
}

const [mode, a, b, c] = process.argv.slice(2);
if (mode === 'train' && a && b && c) {
    const t = read(a);
    t.added_tokens = [];
    t.model.vocab = {};
    t.model.merges = [];
    const tok = Tokenizer.fromString(JSON.stringify(t));
    const t0 = process.hrtime.bigint();
    tok.train([b]);
    process.stderr.write(`${Number(process.hrtime.bigint() - t0) / 1e9}\n`);
    tok.save(c);
} else if (mode === 'compare' && a && b) {
    Tokenizer.fromFile(b);
    const hf = read(a).model, ours = read(b).model;
    const hm = pairs(hf), om = pairs(ours);
    const n = Math.min(hm.length, om.length);
    for (let i = 0; i < n; i++)
        if (hm[i] !== om[i]) die(`merge ${i} differs: hf '${hm[i]}', ours '${om[i]}'`);
    const hl = learned(hf), ol = learned(ours);
    if (ol.alpha !== 256) die(`our alphabet has ${ol.alpha} characters, not 256`);
    for (let i = 0; i < Math.min(hl.tokens.length, ol.tokens.length); i++)
        if (hl.tokens[i] !== ol.tokens[i])
            die(`learned token ${i} differs: hf '${hl.tokens[i]}', ours '${ol.tokens[i]}'`);
    if (n === 0) die('no merges to compare');
    process.stdout.write(`${n} merges identical (hf ${hm.length}, ours ${om.length})\n`);
} else if (mode === 'size' && a) {
    const m = read(a).model;
    process.stdout.write(`${learned(m).alpha} ${m.merges.length}\n`);
} else {
    process.stderr.write('usage: hf_check_trained.js train OURS.json CORPUS OUT.json | compare HF.json OURS.json | size HF.json\n');
    process.exit(2);
}
