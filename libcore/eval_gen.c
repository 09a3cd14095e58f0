/* eval_gen.c — lm-eval's generative tasks: prompts, stop strings,
 * answer extraction and exact match (qw/eval.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <cJSON.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "qw/cli.h"
#include "qw/eval.h"

/* ---- tasks ---- */

static const char *const task_names[] = {"gsm8k", "gsm8k_cot", "math", "humaneval"};
static const char *const until_gsm8k[] = {"Question:", "</s>", "<|im_end|>", NULL};
static const char *const until_cot[] = {"Q:", "</s>", "<|im_end|>", NULL};
static const char *const until_math[] = {"Problem:", NULL};
static const char *const until_humaneval[] = {"\nclass", "\ndef", "\n#", "\nif", "\nprint", NULL};
static const char *const filters_gsm8k[] = {"strict-match", "flexible-extract"};
static const char *const filters_none[] = {"none"};

#define RE_STRICT "#### (\\-?[0-9\\.\\,]+)"
#define RE_COT "The answer is (\\-?[0-9\\.\\,]+)."
#define RE_FLEX "(-?[$0-9.,]{2,})|(-?[0-9]+)"

int qw_gen_task_parse(const char *name, qw_gen_task *t)
{
    for (int i = 0; i < (int)(sizeof task_names / sizeof *task_names); i++)
        if (!strcmp(name, task_names[i])) { *t = (qw_gen_task)i; return 0; }
    return -1;
}

const char *qw_gen_task_name(qw_gen_task t) { return task_names[t]; }

int qw_gen_task_shots(qw_gen_task t) { return t == QW_GEN_GSM8K ? 5 : t == QW_GEN_GSM8K_COT ? 8 : 0; }

const char *const *qw_gen_task_until(qw_gen_task t)
{
    switch (t) {
    case QW_GEN_GSM8K: return until_gsm8k;
    case QW_GEN_GSM8K_COT: return until_cot;
    case QW_GEN_MATH: return until_math;
    default: return until_humaneval;
    }
}

int qw_gen_task_filters(qw_gen_task t, const char *const **names)
{
    if (t == QW_GEN_GSM8K || t == QW_GEN_GSM8K_COT) { *names = filters_gsm8k; return 2; }
    *names = filters_none;
    return 1;
}

/* ---- items ---- */

void qw_gen_item_free(qw_gen_item *it)
{
    free(it->text), free(it->target), free(it->gold), free(it->prompt), free(it->test), free(it->entry_point);
    memset(it, 0, sizeof *it);
}

void qw_gen_item_example(const qw_gen_item *it, qw_buf *b)
{
    qw_buf_adds(b, it->text);
    qw_buf_addc(b, ' ');
    qw_buf_adds(b, it->target);
}

static char *cat3(const char *a, const char *b, const char *c)
{
    qw_buf s = {0};
    qw_buf_adds(&s, a), qw_buf_adds(&s, b), qw_buf_adds(&s, c);
    return (char *)qw_buf_cstr(&s);
}

static int str_field(const cJSON *rec, const char *key, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
    if (!v) return qw_error(QW_EXIT_DATA, "missing field '%s'", key);
    if (!cJSON_IsString(v)) return qw_error(QW_EXIT_DATA, "field '%s' is not a string", key);
    *out = v->valuestring;
    return 0;
}

/* Python's s.strip(): a new string. */
static char *strip_dup(const char *s)
{
    size_t n = strlen(s), a = qw_eval_lstrip(s, n);
    return strndup(s + a, qw_eval_rstrip(s + a, n - a));
}

/* answer.split('####')[-1].strip() */
static char *after_hashes(const char *s)
{
    const char *p = s, *q;
    while ((q = strstr(p, "####"))) p = q + 4;
    return strip_dup(p);
}

int qw_gen_item_parse(qw_gen_task t, const cJSON *rec, qw_gen_item *it)
{
    memset(it, 0, sizeof *it);
    if (!cJSON_IsObject(rec)) return qw_error(QW_EXIT_DATA, "not a JSON object");
    const char *a, *b, *c;
    int rc;
    switch (t) {
    case QW_GEN_GSM8K:
    case QW_GEN_GSM8K_COT:
        if ((rc = str_field(rec, "question", &a)) || (rc = str_field(rec, "answer", &b))) return rc;
        if (t == QW_GEN_GSM8K) {
            it->text = cat3("Question: ", a, "\nAnswer:");
            it->target = qw_strdup(b);
            it->gold = qw_strdup(b);
        } else {
            it->text = cat3("Q: ", a, "\nA:");
            it->gold = after_hashes(b);   /* examples are the fixed exemplars */
        }
        return 0;
    case QW_GEN_MATH: {
        if ((rc = str_field(rec, "problem", &a))) return rc;
        const cJSON *sol = cJSON_GetObjectItemCaseSensitive(rec, "solution");
        if (sol) {
            if ((rc = str_field(rec, "solution", &b))) return rc;
            char *boxed = qw_hendrycks_last_boxed(b);
            it->gold = boxed ? qw_hendrycks_remove_boxed(boxed) : NULL;
            free(boxed);
            if (!it->gold) return qw_error(QW_EXIT_DATA, "no \\boxed{} answer in 'solution'");
        } else {
            if ((rc = str_field(rec, "answer", &b))) return qw_error(QW_EXIT_DATA, "missing field 'solution' (or 'answer')");
            it->gold = qw_strdup(b);
        }
        it->text = cat3("Problem: ", a, "\nAnswer:");
        it->target = qw_strdup(b);
        return 0;
    }
    case QW_GEN_HUMANEVAL:
        if ((rc = str_field(rec, "prompt", &a)) || (rc = str_field(rec, "test", &b)) ||
            (rc = str_field(rec, "entry_point", &c)))
            return rc;
        it->text = qw_strdup(a);
        it->prompt = qw_strdup(a), it->test = qw_strdup(b), it->entry_point = qw_strdup(c);
        return 0;
    }
    return qw_error(QW_EXIT_USAGE, "unknown task");
}

/* lm-eval's gsm8k-cot.yaml fewshot_config.samples */
static const char *const cot[8][2] = {
    {"There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there "
     "will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been "
     "21 - 15 = 6. The answer is 6."},
    {"If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."},
    {"Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they "
     "had 74 - 35 = 39. The answer is 39."},
    {"Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason "
     "give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The "
     "answer is 8."},
    {"Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The "
     "answer is 9."},
    {"There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers "
     "were added. 9 + 20 is 29. The answer is 29."},
    {"Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls "
     "did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he "
     "had 35 - 2 = 33 golf balls. The answer is 33."},
    {"Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. "
     "23 - 15 is 8. The answer is 8."},
};

qw_gen_item *qw_gen_cot_examples(int *n)
{
    qw_gen_item *v = qw_calloc(8, sizeof *v);
    for (int i = 0; i < 8; i++) v[i].text = cat3("Q: ", cot[i][0], "\nA:"), v[i].target = qw_strdup(cot[i][1]);
    *n = 8;
    return v;
}

/* ---- the response ---- */

void qw_gen_response(qw_gen_task t, const char *completion, int thinking, size_t *start, size_t *len)
{
    size_t n = strlen(completion);
    for (const char *const *u = qw_gen_task_until(t); *u; u++) {   /* text.split(term)[0], term by term */
        const char *p = strstr(completion, *u);
        if (p && (size_t)(p - completion) < n) n = (size_t)(p - completion);
    }
    *start = 0;
    const char *p = completion, *q, *end = completion + n;
    int closed = 0;
    while ((q = strstr(p, "</think>")) && q + 8 <= end) p = q + 8, closed = 1;
    if (closed) *start = (size_t)(p - completion);
    else if (thinking) *start = n;
    *len = n - *start;
}

/* ---- regular expressions ---- */

enum { RX_STRICT, RX_COT, RX_FLEX, RX_COMMA, RX_DOLLAR, RX_HASHES, RX_DOT, RX_N };
static const char *const rx_src[RX_N] = {RE_STRICT, RE_COT, RE_FLEX, ",", "\\$", "(?s).*#### ", "\\.$"};
static pcre2_code *rx[RX_N];
static pthread_once_t rx_once = PTHREAD_ONCE_INIT;

static pcre2_code *compile(const char *pattern, char *err, size_t errn)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                                   &code, &off, NULL);
    if (!re && err) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(err, errn, "%s at offset %zu", (char *)msg, (size_t)off);
    }
    return re;
}

static void rx_init(void)
{
    for (int i = 0; i < RX_N; i++)
        if (!(rx[i] = compile(rx_src[i], NULL, 0))) qw_die(QW_EXIT_FAIL, "PCRE2 refused '%s'", rx_src[i]);
}

static size_t u8len(const char *s)
{
    unsigned char c = (unsigned char)*s;
    size_t k = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    for (size_t i = 1; i < k; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) return 1;
    return k;
}

/* re.findall(pattern, text)[select] as lm-eval's RegexFilter uses it. */
static char *regex_filter(const pcre2_code *re, const char *text, size_t n, int select, const char *fallback)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    uint32_t groups;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
    char *found = NULL;
    int have = 0;
    size_t at = 0;
    uint32_t opts = 0;
    while (at <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)text, n, at, opts, md, NULL);
        if (rc < 0) {
            if (opts && at < n) {   /* after an empty match: move one character on */
                at += u8len(text + at);
                opts = 0;
                continue;
            }
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        /* the findall value: the match, its one group, or a tuple's first non-empty group */
        size_t a = ov[0], b = ov[1];
        int ok = 1;
        if (groups == 1) {
            if (ov[2] == PCRE2_UNSET) a = b = 0;
            else a = ov[2], b = ov[3];
        } else if (groups > 1) {
            ok = 0;
            for (uint32_t g = 1; g <= groups && g < (uint32_t)rc; g++)
                if (ov[2 * g] != PCRE2_UNSET && ov[2 * g + 1] > ov[2 * g]) { a = ov[2 * g], b = ov[2 * g + 1]; ok = 1; break; }
        }
        free(found);
        found = ok ? strndup(text + a, b - a) : qw_strdup(fallback);
        if (!found) qw_die(QW_EXIT_FAIL, "out of memory");
        have = 1;
        if (select == 0) break;
        opts = ov[1] == ov[0] ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
        at = ov[1];
    }
    pcre2_match_data_free(md);
    if (!have) return qw_strdup(fallback);
    char *s = strip_dup(found);
    free(found);
    if (!s) qw_die(QW_EXIT_FAIL, "out of memory");
    return s;
}

int qw_gen_regex_filter(const char *pattern, const char *text, size_t n, int select, const char *fallback, char **out)
{
    char err[320];
    *out = NULL;
    pcre2_code *re = compile(pattern, err, sizeof err);
    if (!re) return qw_error(QW_EXIT_USAGE, "regex '%s': %s", pattern, err);
    *out = regex_filter(re, text, n, select, fallback);
    pcre2_code_free(re);
    return 0;
}

char *qw_gen_extract(qw_gen_task t, int f, const char *resp, size_t n)
{
    pthread_once(&rx_once, rx_init);
    if (t == QW_GEN_MATH) {
        char *s = strndup(resp, n);
        if (!s) qw_die(QW_EXIT_FAIL, "out of memory");
        char *boxed = qw_hendrycks_last_boxed(s);
        char *a = boxed ? qw_hendrycks_remove_boxed(boxed) : NULL;
        free(boxed), free(s);
        return a;
    }
    if (f == 0) return regex_filter(rx[t == QW_GEN_GSM8K ? RX_STRICT : RX_COT], resp, n, 0, "[invalid]");
    return regex_filter(rx[RX_FLEX], resp, n, -1, "[invalid]");
}

/* re.sub(pattern, "", s): a new string. */
static char *sub_all(const pcre2_code *re, const char *s)
{
    size_t n = strlen(s), cap = n + 1;
    char *out = qw_malloc(cap);
    PCRE2_SIZE olen = cap;
    int rc = pcre2_substitute(re, (PCRE2_SPTR)s, n, 0, PCRE2_SUBSTITUTE_GLOBAL, NULL, NULL, (PCRE2_SPTR) "", 0,
                              (PCRE2_UCHAR *)out, &olen);
    if (rc < 0) {   /* cannot grow: removing only shrinks; an invalid subject is kept as it is */
        memcpy(out, s, n + 1);
    }
    return out;
}

/* str.lower(), code point by code point (simple case mapping). */
static char *lower(const char *s)
{
    qw_buf b = {0};
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t len = (utf8proc_ssize_t)strlen(s);
    while (len > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, len, &cp);
        if (k <= 0) { qw_buf_addc(&b, (char)*p); p++, len--; continue; }
        utf8proc_uint8_t enc[4];
        qw_buf_add(&b, enc, (size_t)utf8proc_encode_char(utf8proc_tolower(cp), enc));
        p += k, len -= k;
    }
    return (char *)qw_buf_cstr(&b);
}

static char *em_normalize(const char *s)
{
    static const int order[] = {RX_COMMA, RX_DOLLAR, RX_HASHES, RX_DOT};
    char *cur = qw_strdup(s);
    for (int i = 0; i < 4; i++) {
        char *next = sub_all(rx[order[i]], cur);
        free(cur);
        cur = next;
    }
    char *l = lower(cur);
    free(cur);
    return l;
}

int qw_gen_exact_match(const char *pred, const char *ref)
{
    pthread_once(&rx_once, rx_init);
    char *a = em_normalize(pred), *b = em_normalize(ref);
    int eq = !strcmp(a, b);
    free(a), free(b);
    return eq;
}

int qw_gen_correct(qw_gen_task t, const qw_gen_item *it, const char *pred)
{
    if (!pred) return 0;
    if (t == QW_GEN_MATH) return qw_hendrycks_is_equiv(pred, it->gold);
    return qw_gen_exact_match(pred, it->gold);
}

/* ---- Hendrycks MATH ---- */

static char *find_last(const char *s, const char *pat)
{
    char *last = NULL, *p = (char *)s;
    while ((p = strstr(p, pat))) last = p++;
    return last;
}

char *qw_hendrycks_last_boxed(const char *s)
{
    const char *idx = find_last(s, "\\boxed");
    if (strstr(s, "\\boxed ")) {   /* "\\boxed " + string.split("\\boxed ")[-1].split("$")[0] */
        const char *tail = find_last(s, "\\boxed ") + 7;
        size_t k = strcspn(tail, "$");
        qw_buf b = {0};
        qw_buf_adds(&b, "\\boxed ");
        qw_buf_add(&b, tail, k);
        return (char *)qw_buf_cstr(&b);
    }
    if (!idx && !(idx = find_last(s, "\\fbox"))) return NULL;
    int open = 0;
    for (const char *i = idx; *i; i++) {
        if (*i == '{') open++;
        if (*i == '}' && --open == 0) {
            char *r = strndup(idx, (size_t)(i - idx) + 1);
            if (!r) qw_die(QW_EXIT_FAIL, "out of memory");
            return r;
        }
    }
    return NULL;
}

char *qw_hendrycks_remove_boxed(const char *s)
{
    if (strstr(s, "\\boxed ")) return strncmp(s, "\\boxed ", 7) ? NULL : qw_strdup(s + 7);
    size_t n = strlen(s);
    if (strncmp(s, "\\boxed{", 7) || n < 8 || s[n - 1] != '}') return NULL;   /* the asserts */
    char *r = strndup(s + 7, n - 8);
    if (!r) qw_die(QW_EXIT_FAIL, "out of memory");
    return r;
}

/* s.replace(from, to) on a buffer holding a C string. */
static void replace(qw_buf *b, const char *from, const char *to)
{
    qw_buf r = {0};
    size_t fl = strlen(from);
    const char *p = qw_buf_cstr(b), *q;
    while ((q = strstr(p, from))) {
        qw_buf_add(&r, p, (size_t)(q - p));
        qw_buf_adds(&r, to);
        p = q + fl;
    }
    qw_buf_adds(&r, p);
    qw_buf_cstr(&r);
    qw_buf_free(b);
    *b = r;
}

static void set(qw_buf *b, const char *s)
{
    qw_buf r = {0};
    qw_buf_adds(&r, s);
    qw_buf_cstr(&r);
    qw_buf_free(b);
    *b = r;
}

static size_t count(const char *s, const char *pat)
{
    size_t k = 0, fl = strlen(pat);
    for (const char *p = s; (p = strstr(p, pat)); p += fl) k++;
    return k;
}

/* len() of a str: code points of valid UTF-8 */
static size_t chars(const char *s, size_t n) { return (size_t)qw_eval_chars(s, n); }

/* int(s) in Python: 1 when it parses and str(int(s)) == s, 0 when it
 * parses otherwise, -1 when it raises ValueError (surrounding white space,
 * a sign, decimal digits of any script with single underscores between
 * them; more than 4300 digits is refused, Python's default limit). */
static int py_int(const char *s)
{
    size_t n = strlen(s), a = qw_eval_lstrip(s, n);
    size_t e = a + qw_eval_rstrip(s + a, n - a);
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s + a;
    utf8proc_ssize_t len = (utf8proc_ssize_t)(e - a);
    if (len > 0 && (*p == '+' || *p == '-')) p++, len--;
    int digits = 0, prev_us = 1, ascii = 1;
    while (len > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, len, &cp);
        if (k <= 0) return -1;
        if (cp == '_') {
            if (prev_us) return -1;
            prev_us = 1;
        } else if (utf8proc_category(cp) == UTF8PROC_CATEGORY_ND) {
            digits++, prev_us = 0;
            if (cp > '9') ascii = 0;
        } else {
            return -1;
        }
        p += k, len -= k;
    }
    if (!digits || prev_us || digits > 4300) return -1;
    /* canonical: "0" or an optional '-', then ASCII digits without a leading zero */
    if (!ascii || a || e != n || strchr(s, '_') || s[0] == '+') return 0;
    const char *d = s[0] == '-' ? s + 1 : s;
    if (d[0] == '0') return s[0] != '-' && d[1] == 0;
    return 1;
}

/* fix_sqrt; -1 where Python raises (a "\sqrt" at the very end) */
static int fix_sqrt(qw_buf *b)
{
    const char *s = qw_buf_cstr(b);
    if (!strstr(s, "\\sqrt")) return 0;
    qw_buf r = {0};
    const char *p = strstr(s, "\\sqrt");
    qw_buf_add(&r, s, (size_t)(p - s));
    while (p) {
        const char *seg = p + 5, *next = strstr(seg, "\\sqrt");
        size_t sl = next ? (size_t)(next - seg) : strlen(seg);
        if (sl == 0) { qw_buf_free(&r); return -1; }   /* split[0] of "" */
        if (seg[0] != '{') {
            size_t k = u8len(seg);
            if (k > sl) k = sl;
            qw_buf_adds(&r, "\\sqrt{");
            qw_buf_add(&r, seg, k);
            qw_buf_addc(&r, '}');
            qw_buf_add(&r, seg + k, sl - k);
        } else {
            qw_buf_adds(&r, "\\sqrt");
            qw_buf_add(&r, seg, sl);
        }
        p = next;
    }
    qw_buf_cstr(&r);
    qw_buf_free(b);
    *b = r;
    return 0;
}

/* fix_fracs; -1 where Python raises (an empty piece after "\frac") */
static int fix_fracs(qw_buf *b)
{
    const char *s = qw_buf_cstr(b);
    const char *p = strstr(s, "\\frac");
    if (!p) return 0;
    qw_buf r = {0};
    qw_buf_add(&r, s, (size_t)(p - s));
    while (p) {
        const char *seg = p + 5, *next = strstr(seg, "\\frac");
        size_t sl = next ? (size_t)(next - seg) : strlen(seg);
        qw_buf_adds(&r, "\\frac");
        if (sl == 0) { qw_buf_free(&r); return -1; }
        if (seg[0] == '{') {
            qw_buf_add(&r, seg, sl);
        } else {
            size_t ka = u8len(seg);
            if (ka > sl) ka = sl;
            if (ka == sl) { qw_buf_free(&r); return 0; }   /* assert len(substr) >= 2 fails: the string unchanged */
            size_t kb = u8len(seg + ka);
            if (ka + kb > sl) kb = sl - ka;
            qw_buf_addc(&r, '{');
            qw_buf_add(&r, seg, ka);
            if (seg[ka] != '{' || kb != 1) {
                qw_buf_adds(&r, "}{");
                qw_buf_add(&r, seg + ka, kb);
                qw_buf_addc(&r, '}');
            } else {
                qw_buf_addc(&r, '}');
                qw_buf_add(&r, seg + ka, kb);
            }
            qw_buf_add(&r, seg + ka + kb, sl - ka - kb);
        }
        p = next;
    }
    qw_buf_cstr(&r);
    qw_buf_free(b);
    *b = r;
    return 0;
}

/* fix_a_slash_b; -1 where int() raises */
static int fix_a_slash_b(qw_buf *b)
{
    const char *s = qw_buf_cstr(b);
    if (count(s, "/") != 1) return 0;
    const char *sl = strchr(s, '/');
    char *a = strndup(s, (size_t)(sl - s));
    if (!a) qw_die(QW_EXIT_FAIL, "out of memory");
    int ia = py_int(a), ib = ia < 0 ? -1 : py_int(sl + 1);
    if (ia < 0 || ib < 0) { free(a); return -1; }
    if (ia == 1 && ib == 1) {
        char *f = cat3("\\frac{", a, "}{");
        qw_buf r = {0};
        qw_buf_adds(&r, f), qw_buf_adds(&r, sl + 1), qw_buf_addc(&r, '}');
        qw_buf_cstr(&r);
        free(f);
        qw_buf_free(b);
        *b = r;
    }
    free(a);
    return 0;
}

int qw_hendrycks_strip_string(const char *in, char **out)
{
    *out = NULL;
    qw_buf b = {0};
    qw_buf_adds(&b, in);
    replace(&b, "\n", "");
    replace(&b, "\\!", "");
    replace(&b, "\\\\", "\\");
    replace(&b, "tfrac", "frac");
    replace(&b, "dfrac", "frac");
    replace(&b, "\\left", "");
    replace(&b, "\\right", "");
    replace(&b, "^{\\circ}", "");
    replace(&b, "^\\circ", "");
    replace(&b, "\\$", "");
    /* remove_right_units */
    const char *s = qw_buf_cstr(&b);
    if (strstr(s, "\\text{ ")) {
        if (count(s, "\\text{ ") != 1) { qw_buf_free(&b); return -1; }   /* assert len(splits) == 2 */
        b.n = (size_t)(strstr(s, "\\text{ ") - s);
    }
    replace(&b, "\\%", "");
    replace(&b, " .", " 0.");
    replace(&b, "{.", "{0.");
    s = qw_buf_cstr(&b);
    if (b.n == 0) { *out = qw_strdup(""); qw_buf_free(&b); return 0; }
    if (s[0] == '.') {
        char *t = cat3("0", s, "");
        set(&b, t);
        free(t);
    }
    s = qw_buf_cstr(&b);
    if (count(s, "=") == 1) {   /* "k = 3" → " 3" when the left side has at most 2 characters */
        const char *eq = strchr(s, '=');
        if (chars(s, (size_t)(eq - s)) <= 2) {
            char *t = qw_strdup(eq + 1);
            set(&b, t);
            free(t);
        }
    }
    if (fix_sqrt(&b)) { qw_buf_free(&b); return -1; }
    replace(&b, " ", "");
    if (fix_fracs(&b)) { qw_buf_free(&b); return -1; }
    if (!strcmp(qw_buf_cstr(&b), "0.5")) set(&b, "\\frac{1}{2}");
    if (fix_a_slash_b(&b)) { qw_buf_free(&b); return -1; }
    *out = (char *)qw_buf_cstr(&b);
    return 0;
}

int qw_hendrycks_is_equiv(const char *x, const char *y)
{
    char *a, *b = NULL;
    if (qw_hendrycks_strip_string(x, &a) || qw_hendrycks_strip_string(y, &b)) {
        free(a), free(b);
        return !strcmp(x, y);
    }
    int eq = !strcmp(a, b);
    free(a), free(b);
    return eq;
}

/* ---- pass@k ---- */

double qw_eval_pass_at_k(int64_t n, int64_t c, int64_t k)
{
    if (n - c < k) return 1.0;
    double p = 1.0;
    for (int64_t i = n - c + 1; i <= n; i++) p *= 1.0 - (double)k / (double)i;
    return 1.0 - p;
}
