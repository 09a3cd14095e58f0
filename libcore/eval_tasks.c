/* eval_tasks.c — the multiple-choice layouts of lm-eval's tasks (qw/eval.h). */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "qw/cli.h"
#include "qw/eval.h"

static const char *const names[] = {"generic", "hellaswag", "arc", "mmlu", "piqa", "winogrande"};

int qw_mc_format_parse(const char *name, qw_mc_format *f)
{
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
        if (!strcmp(name, names[i])) { *f = (qw_mc_format)i; return 0; }
    return -1;
}

const char *qw_mc_format_name(qw_mc_format f) { return names[f]; }
int qw_mc_format_has_norm(qw_mc_format f) { return f != QW_MC_MMLU && f != QW_MC_WINOGRANDE; }

void qw_mc_item_free(qw_mc_item *it)
{
    for (int i = 0; i < it->n; i++) free(it->choice[i]);
    free(it->choice), free(it->text), free(it->target), free(it->description);
    memset(it, 0, sizeof *it);
}

void qw_mc_item_example(const qw_mc_item *it, const char *delim, qw_buf *b)
{
    qw_buf_adds(b, it->text ? it->text : it->choice[it->gold]);
    const char *y = it->text ? it->choice[it->gold] : it->target;
    if (*y) {   /* lm-eval adds the delimiter only before a non-empty target */
        qw_buf_adds(b, delim);
        qw_buf_adds(b, y);
    }
}

/* ---- fields ---- */

static int str_field(const cJSON *rec, const char *key, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
    if (!v) return qw_error(QW_EXIT_DATA, "missing field '%s'", key);
    if (!cJSON_IsString(v)) return qw_error(QW_EXIT_DATA, "field '%s' is not a string", key);
    *out = v->valuestring;
    return 0;
}

/* An index: a JSON integer or a string of digits. */
static int int_field(const cJSON *rec, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
    if (!v) return qw_error(QW_EXIT_DATA, "missing field '%s'", key);
    if (cJSON_IsNumber(v) && v->valuedouble == (double)(int)v->valuedouble) { *out = (int)v->valuedouble; return 0; }
    if (cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) < 10 &&
        strspn(v->valuestring, "0123456789") == strlen(v->valuestring)) {
        *out = atoi(v->valuestring);
        return 0;
    }
    return qw_error(QW_EXIT_DATA, "field '%s' is not an integer index", key);
}

/* An array of strings, copied into it->choice. */
static int choices_from(const cJSON *a, const char *key, qw_mc_item *it)
{
    if (!a) return qw_error(QW_EXIT_DATA, "missing field '%s'", key);
    if (!cJSON_IsArray(a)) return qw_error(QW_EXIT_DATA, "field '%s' is not an array", key);
    int n = cJSON_GetArraySize(a);
    if (n == 0) return qw_error(QW_EXIT_DATA, "no choices ('%s' is empty)", key);
    it->choice = qw_calloc(n, sizeof *it->choice);
    for (const cJSON *c = a->child; c; c = c->next) {
        if (!cJSON_IsString(c)) return qw_error(QW_EXIT_DATA, "%s[%d] is not a string", key, it->n);
        it->choice[it->n++] = qw_strdup(c->valuestring);
    }
    return 0;
}

static char *join(const char *a, const char *b, const char *c)
{
    qw_buf s = {0};
    qw_buf_adds(&s, a), qw_buf_adds(&s, b), qw_buf_adds(&s, c);
    return (char *)qw_buf_cstr(&s);
}

/* ---- HellaSwag ---- */

/* s.replace(from, to), non-overlapping, left to right; frees s. */
static char *replace(char *s, const char *from, const char *to)
{
    qw_buf b = {0};
    size_t fl = strlen(from);
    for (const char *p = s, *q; ; p = q + fl) {
        q = strstr(p, from);
        if (!q) { qw_buf_adds(&b, p); break; }
        qw_buf_add(&b, p, (size_t)(q - p));
        qw_buf_adds(&b, to);
    }
    free(s);
    return (char *)qw_buf_cstr(&b);
}

/* lm-eval's hellaswag preprocess: strip; " [title]" → ". "; drop every
 * shortest "[...]" without a newline inside; "  " → " " (one pass). */
static char *hs_preprocess(const char *in)
{
    size_t a = qw_eval_lstrip(in, strlen(in)), n = strlen(in + a);
    n = qw_eval_rstrip(in + a, n);
    char *s = strndup(in + a, n);
    if (!s) qw_die(QW_EXIT_FAIL, "out of memory");
    s = replace(s, " [title]", ". ");
    qw_buf b = {0};
    for (const char *p = s; *p;) {
        const char *close = NULL;
        if (*p == '[')
            for (const char *q = p + 1; *q && *q != '\n'; q++)
                if (*q == ']') { close = q; break; }
        if (close) p = close + 1;
        else qw_buf_addc(&b, *p++);
    }
    free(s);
    return replace((char *)qw_buf_cstr(&b), "  ", " ");
}

/* str.capitalize(): the first character in title case, the rest lower case. */
static char *capitalize(const char *s)
{
    qw_buf b = {0};
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t len = (utf8proc_ssize_t)strlen(s);
    int first = 1;
    while (len > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, len, &cp);
        if (k <= 0) { qw_buf_addc(&b, (char)*p); p++, len--; first = 0; continue; }
        cp = first ? utf8proc_totitle(cp) : utf8proc_tolower(cp);
        utf8proc_uint8_t enc[4];
        qw_buf_add(&b, enc, (size_t)utf8proc_encode_char(cp, enc));
        p += k, len -= k, first = 0;
    }
    return (char *)qw_buf_cstr(&b);
}

static int parse_hellaswag(const cJSON *rec, qw_mc_item *it)
{
    const char *label, *a, *b;
    int rc = str_field(rec, "activity_label", &label);
    if (rc) return rc;
    char *ctx;
    if (cJSON_GetObjectItemCaseSensitive(rec, "ctx_a")) {
        if ((rc = str_field(rec, "ctx_a", &a)) || (rc = str_field(rec, "ctx_b", &b))) return rc;
        char *cb = capitalize(b);
        ctx = join(a, " ", cb);
        free(cb);
    } else {
        if ((rc = str_field(rec, "ctx", &a))) return qw_error(QW_EXIT_DATA, "missing field 'ctx_a' (or 'ctx')");
        ctx = qw_strdup(a);
    }
    char *q = join(label, ": ", ctx);
    free(ctx);
    it->text = hs_preprocess(q);
    free(q);
    if ((rc = choices_from(cJSON_GetObjectItemCaseSensitive(rec, "endings"), "endings", it))) return rc;
    for (int i = 0; i < it->n; i++) {
        char *e = hs_preprocess(it->choice[i]);
        free(it->choice[i]);
        it->choice[i] = e;
    }
    return int_field(rec, "label", &it->gold);
}

/* ---- the others ---- */

static int parse_arc(const cJSON *rec, qw_mc_item *it)
{
    const char *q, *key;
    int rc;
    if ((rc = str_field(rec, "question", &q))) return rc;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(rec, "choices");
    if (!cJSON_IsObject(ch)) return qw_error(QW_EXIT_DATA, "field 'choices' is not an object {text, label}");
    if ((rc = choices_from(cJSON_GetObjectItemCaseSensitive(ch, "text"), "choices.text", it))) return rc;
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(ch, "label");
    if (!cJSON_IsArray(labels) || cJSON_GetArraySize(labels) != it->n)
        return qw_error(QW_EXIT_DATA, "'choices.label' is not an array as long as 'choices.text'");
    if ((rc = str_field(rec, "answerKey", &key))) return rc;
    it->text = join("Question: ", q, "\nAnswer:");
    it->gold = -1;
    int i = 0;
    for (const cJSON *l = labels->child; l; l = l->next, i++)
        if (cJSON_IsString(l) && !strcmp(l->valuestring, key)) { it->gold = i; break; }
    if (it->gold < 0) return qw_error(QW_EXIT_DATA, "answerKey '%s' is not among choices.label", key);
    return 0;
}

static int parse_mmlu(const cJSON *rec, qw_mc_item *it)
{
    const char *q;
    int rc;
    if ((rc = str_field(rec, "question", &q))) return rc;
    qw_mc_item c = {0};
    if ((rc = choices_from(cJSON_GetObjectItemCaseSensitive(rec, "choices"), "choices", &c))) {
        qw_mc_item_free(&c);
        return rc;
    }
    if (c.n > 26) {
        qw_mc_item_free(&c);
        return qw_error(QW_EXIT_DATA, "more than 26 choices");
    }
    /* "{{question.strip()}}\nA. {{choices[0]}}\n…\nAnswer:" */
    qw_buf t = {0};
    size_t a = qw_eval_lstrip(q, strlen(q));
    qw_buf_add(&t, q + a, qw_eval_rstrip(q + a, strlen(q + a)));
    it->choice = qw_calloc(c.n, sizeof *it->choice);
    for (int i = 0; i < c.n; i++) {
        char l[2] = {(char)('A' + i), 0};
        qw_buf_addc(&t, '\n'), qw_buf_adds(&t, l), qw_buf_adds(&t, ". "), qw_buf_adds(&t, c.choice[i]);
        it->choice[it->n++] = qw_strdup(l);
    }
    qw_buf_adds(&t, "\nAnswer:");
    it->text = (char *)qw_buf_cstr(&t);
    qw_mc_item_free(&c);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(rec, "subject");
    if (cJSON_IsString(s)) {
        char *subj = replace(qw_strdup(s->valuestring), "_", " ");
        it->description = join("The following are multiple choice questions (with answers) about ", subj, ".\n\n");
        free(subj);
    }
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(rec, "answer");
    if (cJSON_IsString(ans) && strlen(ans->valuestring) == 1 && ans->valuestring[0] >= 'A' && ans->valuestring[0] <= 'Z') {
        it->gold = ans->valuestring[0] - 'A';
        return 0;
    }
    return int_field(rec, "answer", &it->gold);
}

static int parse_piqa(const cJSON *rec, qw_mc_item *it)
{
    const char *g, *s1, *s2;
    int rc;
    if ((rc = str_field(rec, "goal", &g)) || (rc = str_field(rec, "sol1", &s1)) || (rc = str_field(rec, "sol2", &s2)))
        return rc;
    it->text = join("Question: ", g, "\nAnswer:");
    it->choice = qw_calloc(2, sizeof *it->choice);
    it->choice[0] = qw_strdup(s1), it->choice[1] = qw_strdup(s2), it->n = 2;
    return int_field(rec, "label", &it->gold);
}

static int parse_winogrande(const cJSON *rec, qw_mc_item *it)
{
    const char *s, *o1, *o2, *ans;
    int rc;
    if ((rc = str_field(rec, "sentence", &s)) || (rc = str_field(rec, "option1", &o1)) ||
        (rc = str_field(rec, "option2", &o2)) || (rc = str_field(rec, "answer", &ans)))
        return rc;
    const char *u = strchr(s, '_');
    if (!u) return qw_error(QW_EXIT_DATA, "'sentence' has no '_' to fill");
    if (strcmp(ans, "1") && strcmp(ans, "2")) return qw_error(QW_EXIT_DATA, "answer '%s' is not \"1\" or \"2\"", ans);
    char *head = strndup(s, (size_t)(u - s));
    if (!head) qw_die(QW_EXIT_FAIL, "out of memory");
    it->choice = qw_calloc(2, sizeof *it->choice);
    it->choice[0] = join(head, o1, ""), it->choice[1] = join(head, o2, ""), it->n = 2;
    free(head);
    const char *rest = u + 1;
    size_t a = qw_eval_lstrip(rest, strlen(rest));
    it->target = strndup(rest + a, qw_eval_rstrip(rest + a, strlen(rest + a)));
    if (!it->target) qw_die(QW_EXIT_FAIL, "out of memory");
    it->gold = ans[0] - '1';
    return 0;
}

static int parse_generic(const cJSON *rec, qw_mc_item *it)
{
    const char *c;
    int rc;
    if ((rc = str_field(rec, "context", &c))) return rc;
    it->text = qw_strdup(c);
    if ((rc = choices_from(cJSON_GetObjectItemCaseSensitive(rec, "choices"), "choices", it))) return rc;
    return int_field(rec, "gold", &it->gold);
}

int qw_mc_item_parse(qw_mc_format f, const cJSON *rec, qw_mc_item *it)
{
    memset(it, 0, sizeof *it);
    if (!cJSON_IsObject(rec)) return qw_error(QW_EXIT_DATA, "not a JSON object");
    static int (*const parse[])(const cJSON *, qw_mc_item *) = {parse_generic, parse_hellaswag, parse_arc,
                                                                parse_mmlu, parse_piqa, parse_winogrande};
    int rc = parse[f](rec, it);
    if (!rc && (it->gold < 0 || it->gold >= it->n))
        rc = qw_error(QW_EXIT_DATA, "gold %d is out of range (%d choices)", it->gold, it->n);
    if (rc) qw_mc_item_free(it);
    return rc;
}
