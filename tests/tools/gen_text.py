#!/usr/bin/env python3
"""gen_text.py — deterministic, diverse text for tokenizer tests (stdlib only).

    gen_text.py [--seed N] [--bytes N] [--sweep] > docs.jsonl

Writes JSONL documents {"text": ...} until about --bytes of UTF-8 text
(default 1 MB).  Each document strings together pieces of many kinds:
prose in Latin scripts with diacritics, Cyrillic, Greek, Arabic, Hebrew,
Devanagari, Thai, CJK, kana, Hangul; code; emoji with ZWJ sequences, skin
tones, flags and keycaps; runs of spaces, tabs, CR, LF, CRLF and Unicode
spaces; contractions in mixed case; digits of many scripts, superscripts,
fractions and roman numerals; combining marks out of order and other non-NFC
input; Qwen's special tokens and near misses inside text; long words and
runs; and random code points from every plane.  The same seed gives the same
bytes.

--sweep instead writes documents that put every code point of planes 0 and 1
and a sample of the others in the contexts that tell the pre-tokenizer's
character classes and the normaliser's tables apart.
"""
import argparse
import json
import random
import sys

WORDS = {
    'en': "the of and to in is was he for it with as his on be at by I this had not are but from or have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three".split(),
    'fr': "été déjà où garçon français naïve cœur élève hôtel château forêt être très après fenêtre noël maïs Ça à côté lycée".split(),
    'de': "Straße Größe über schön Mädchen Übung Äpfel Fuß weiß Bär müssen Grüße Öl außerdem".split(),
    'es': "niño año señor mañana corazón canción están también árbol pingüino ¿Qué? ¡Hola!".split(),
    'pl': "zażółć gęślą jaźń źdźbło łódź Kraków pięść".split(),
    'vi': "Tiếng Việt người Việt Nam xin chào cảm ơn nhiều được không những".split(),
    'tr': "İstanbul ığdır şehir çok güzel Iğdır".split(),
    'ru': "Привет мир это тест русского языка съешь же ещё этих мягких французских булок да выпей чаю Ёж".split(),
    'uk': "Їжак ґанок європейський пісня".split(),
    'el': "Καλημέρα κόσμε ΑΒΓΔ ελληνικά γλώσσα ψυχή ΣΟΦΙΑ σοφίας ς".split(),
    'ar': "مرحبا بالعالم هذا اختبار للغة العربية الكتاب مدرسة".split(),
    'he': "שלום עולם זה מבחן עברית ספר".split(),
    'hi': "नमस्ते दुनिया यह हिंदी भाषा का परीक्षण है क्षत्रिय".split(),
    'th': "สวัสดีชาวโลก นี่คือการทดสอบภาษาไทย".split(),
    'zh': "你好世界这是一个中文测试人工智能模型训练数据".split() + list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年"),
    'ja': "こんにちは世界 これはテストです カタカナ ひらがな 日本語".split(),
    'ko': "안녕하세요 세계 이것은 한국어 테스트입니다 한글".split(),
}

CODE = [
    'def f(x):\n    return x ** 2  # square\n',
    'for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n',
    'const y = await fetch(`https://example.com/api?q=${q}&n=10`);\n',
    '{"key": [1, 2.5e-3, null, true], "nested": {"a": "b"}}',
    '<div class="x">&nbsp;<br/></div>\n',
    'SELECT * FROM users WHERE id = 42;\r\n',
    '    if x:\n        pass\n\n\n    else:\n\t\treturn None\n',
    "printf(\"%d\\n\", x);  // it's fine\n",
    '#include <stdio.h>\nint main(void){return 0;}\n',
    '$ ls -la | grep "^d" && echo ok || exit 1\n',
    'x = [i for i in range(10) if i % 2 == 0]\n',
    'a:=b+c;;;;\t\t// ===>> !== <=\n',
]

EMOJI = ['😀', '🤷🏽\u200d♀️', '👨\u200d👩\u200d👧\u200d👦', '🏳️\u200d🌈', '🇫🇷', '🇯🇵', '1️⃣', '#️⃣',
         '👍🏻', '👍🏿', '❤️', '✨', '🧑🏾\u200d💻', '🐈\u200d⬛', '©', '™', '🫠', '\u2764\ufe0f\u200d\U0001F525']

SPACES = [' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\r\n', '\r', ' \n', '\n ', ' \t ', '\u00a0',
          '\u3000', '\u2028', '\u2029', '\u0085', '\u2009', '\u202f', '\u205f', '\u1680', '\u180e',
          '\u200b', '\x0b', '\x0c', '\x1c', '\x1f', ' ' * 17, '\t \n \r\n  ', '\n' * 5]

CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'rE", "'ve", "'VE", "'Ve", "'m", "'M", "'ll",
                "'LL", "'Ll", "'d", "'D", "'\u017f", "'\u017ft", "’s", "'x", "'", "''", "'1", "'ß", "'K", "'\u212a"]

DIGITS = ['0123456789', '٠١٢٣٤٥٦٧٨٩', '۰۱۲۳۴۵۶۷۸۹', '०१२३४५६७८९', '০১২৩৪৫৬৭৮৯', '๐๑๒๓๔๕๖๗๘๙',
          '０１２３４５６７８９', '¹²³⁴⁵⁶⁷⁸⁹⁰', '₀₁₂₃₄', '½¼¾⅓⅞', 'ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫ', 'ⅰⅱⅲⅳⅴ', '①②③⑳',
          '〇一二三', '𝟎𝟏𝟐𝟑', '፩፪፫', '𐄇𐄈', '߀߁߂']

# Non-NFC input: decomposed letters, marks out of canonical order, singletons,
# exclusions, Hangul jamo, and marks HF's normaliser does not know.
NON_NFC = ['e\u0301', 'a\u0308', 'A\u030a', 'o\u0302\u0301', 'a\u0323\u0302', 'a\u0302\u0323',
           'q\u0307\u0323', 'x\u0345\u0301', 'e\u0301\u0301', '\u212b', '\u2126', '\u212a', '\u0958',
           '\u0915\u093c', '\u1100\u1161', '\u1100\u1161\u11a8', '\uac00\u11a8', '\u0344', '\u0340',
           'ﬁ', 'ﬀ', '\u1e9b\u0323', 'n\u0303', 'u\u0308\u0304', '\u05d0\u05b7', '\u0627\u0653',
           'a\u07fd\u0301', '\u0301\u07fd', 'e\u1ac0\u0323', '\U00011935\U00011930', 'c\u0327\u0301',
           '\u0301', '\u0308\u0301', 'Ω\u0301', '\u03b9\u0308\u0301', 'i\u0307', 'ᾳ\u0301',
           '\u0928\u093c', 'k\u035c\u0301', '\U0001d15e', '\u2adc', '\u0f73', '\u0b47\u0b3e']

SPECIALS = ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>', '<tool_call>',
            '</tool_call>', '<tool_response>', '<|vision_start|>', '<|image_pad|>', '<|fim_prefix|>',
            '<|im_sta', '<think', '< think>', '<<|im_end|>>', '<|im_start|><|im_start|>', '<|IM_START|>',
            '<|im_end|>\n', ' <think> ', '<|im_start|>user\n', '</think>\n\n']


def word(r, lang):
    return r.choice(WORDS[lang])


def piece(r):
    k = r.random()
    if k < 0.30:
        lang = r.choice(list(WORDS))
        sep = '' if lang in ('zh', 'ja', 'th') and r.random() < 0.5 else ' '
        ws = [word(r, lang) for _ in range(r.randint(1, 12))]
        if r.random() < 0.3:
            ws = [w.upper() if r.random() < 0.5 else w.capitalize() for w in ws]
        s = sep.join(ws)
        if r.random() < 0.5:
            s += r.choice(['.', ',', '!', '?', ';', ':', '...', '。', '、', '؟', '—', ' -', '"', ')'])
        return s
    if k < 0.40:
        return r.choice(CODE)
    if k < 0.47:
        return ''.join(r.choice(EMOJI) for _ in range(r.randint(1, 4)))
    if k < 0.55:
        return r.choice(SPACES)
    if k < 0.62:
        return word(r, r.choice(['en', 'en', 'fr', 'de', 'el', 'ru'])) + r.choice(CONTRACTIONS)
    if k < 0.69:
        d = r.choice(DIGITS)
        return ''.join(r.choice(d) for _ in range(r.randint(1, 9)))
    if k < 0.76:
        return ''.join(r.choice(NON_NFC) for _ in range(r.randint(1, 3)))
    if k < 0.82:
        return r.choice(SPECIALS)
    if k < 0.88:
        return random_code_points(r, r.randint(1, 12))
    if k < 0.94:
        return long_run(r)
    return ''.join(r.choice('!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\'') for _ in range(r.randint(1, 6)))


def random_code_point(r):
    plane = r.random()
    if plane < 0.6:
        c = r.randrange(0x80, 0x10000)
    elif plane < 0.85:
        c = r.randrange(0x10000, 0x20000)
    else:
        c = r.randrange(0x20000, 0x110000)
    if 0xD800 <= c <= 0xDFFF:
        c = 0xFFFD
    return chr(c)


def random_code_points(r, n):
    return ''.join(random_code_point(r) if r.random() < 0.8 else chr(r.randrange(1, 0x80)) for _ in range(n))


def long_run(r):
    k = r.randrange(7)
    n = r.randint(20, 400)
    if k == 0:
        return ''.join(r.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(n))
    if k == 1:
        return ''.join(r.choice('0123456789') for _ in range(n))
    if k == 2:
        return r.choice('=-*#~_.') * n
    if k == 3:
        return r.choice([' ', '\t', '\n', ' \n', '\r\n']) * (n // 4 + 1)
    if k == 4:
        return ''.join(r.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') for _ in range(n)) + '=='
    if k == 5:
        return 'https://example.org/' + '/'.join(word(r, 'en') for _ in range(n // 20 + 1)) + '?id=' + str(r.randrange(10 ** 9))
    return ''.join(r.choice(WORDS['zh']) for _ in range(n // 4 + 1))


def document(r):
    n = r.choice([1, 2, 5, 20, 60, 200])
    out = []
    for _ in range(n):
        out.append(piece(r))
        if r.random() < 0.7:
            out.append(r.choice([' ', ' ', ' ', '\n', '', '\t', '  ', '\n\n']))
    return ''.join(out)


# Contexts around a code point c that separate \p{L}, \p{N}, \s and the rest,
# the contractions' case folding, and NFC's combining classes and compositions.
SWEEP_CONTEXTS = ['a{c}1', '!{c}1', '{c}x1', ' {c}a1', "it'{c}1", '{c}\u0301 1', 'x\u0345{c}1', '{c}{c} 1', '\n{c} \n']


def sweep():
    cps = [c for c in range(1, 0x20000) if not 0xD800 <= c <= 0xDFFF]
    cps += list(range(0x20000, 0x110000, 61))
    per_doc = 2000
    for i in range(0, len(cps), per_doc):
        parts = []
        for c in cps[i:i + per_doc]:
            ctx = SWEEP_CONTEXTS[c % len(SWEEP_CONTEXTS)]
            parts.append(ctx.replace('{c}', chr(c)))
        yield ''.join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--bytes', type=int, default=1 << 20)
    ap.add_argument('--sweep', action='store_true')
    a = ap.parse_args()
    out = sys.stdout
    if a.sweep:
        for d in sweep():
            out.write(json.dumps({'text': d}, ensure_ascii=False) + '\n')
        return
    r = random.Random(a.seed)
    total = 0
    while total < a.bytes:
        d = document(r)
        total += len(d.encode('utf-8'))
        out.write(json.dumps({'text': d}, ensure_ascii=False) + '\n')


if __name__ == '__main__':
    main()
