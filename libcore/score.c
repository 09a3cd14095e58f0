/* score.c — records scored by the verifiers of a --verifier spec
 * (qw/score.h); the verifiers themselves are reward.c's. */
#include "qw/score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qw/chat.h"
#include "qw/cli.h"

const char *const qw_verifier_names[QW_VER_KINDS] = { "math", "think", "code", "model", "cmd" };

int qw_scorer_parse(const char *spec, qw_scorer *s)
{
    memset(s, 0, sizeof *s);
    s->spec = spec;
    s->answer_field = "answer";
    qw_sandbox_defaults(&s->sandbox);
    char *dup = qw_strdup(spec), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(dup, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        double w = 1;
        if (colon) {
            *colon = 0;
            char *end;
            w = strtod(colon + 1, &end);
            if (end == colon + 1 || *end || !isfinite(w)) {
                rc = qw_error(QW_EXIT_USAGE, "--verifier: '%s' is not a weight", colon + 1);
                break;
            }
        }
        int k = 0;
        while (k < QW_VER_KINDS && strcmp(tok, qw_verifier_names[k])) k++;
        if (k == QW_VER_KINDS) rc = qw_error(QW_EXIT_USAGE, "--verifier: '%s' is not math, think, code, model or cmd", tok);
        else if (s->uses[k]) rc = qw_error(QW_EXIT_USAGE, "--verifier: '%s' is named twice", tok);
        else {
            s->uses[k] = 1;
            s->kind[s->n] = k, s->weight[s->n] = w, s->n++;
        }
    }
    free(dup);
    if (!rc && !s->n) rc = qw_error(QW_EXIT_USAGE, "--verifier: name at least one verifier");
    return rc;
}

static int str_field(const qw_scorer *s, const cJSON *rec, const char *name, const char *where, int required,
                     const char **out)
{
    cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, name);
    *out = NULL;
    if (!f) return required ? qw_error(QW_EXIT_DATA, "%s: no \"%s\" (needed by --verifier %s)", where, name, s->spec) : 0;
    if (!cJSON_IsString(f)) return qw_error(QW_EXIT_DATA, "%s: \"%s\" is not a string", where, name);
    *out = f->valuestring;
    return 0;
}

int qw_scorer_check(const qw_scorer *s, const cJSON *rec, const char *where, const char **completion)
{
    const char *x;
    int rc = str_field(s, rec, "completion", where, s->uses[QW_VER_MATH] || s->uses[QW_VER_THINK] || s->uses[QW_VER_CODE],
                       completion);
    if (rc) return rc;
    if (s->uses[QW_VER_MATH]) {
        cJSON *g = cJSON_GetObjectItemCaseSensitive(rec, s->answer_field);
        if (!g)
            return qw_error(QW_EXIT_DATA, "%s: no \"%s\" (the gold answer of --verifier math; see --answer-field)", where,
                            s->answer_field);
        if (!cJSON_IsString(g) && !cJSON_IsNumber(g))
            return qw_error(QW_EXIT_DATA, "%s: \"%s\" is neither a string nor a number", where, s->answer_field);
    }
    if (s->uses[QW_VER_CODE]) {
        if ((rc = str_field(s, rec, "prompt", where, 1, &x)) || (rc = str_field(s, rec, "test", where, 1, &x)) ||
            (rc = str_field(s, rec, "entry_point", where, 1, &x)))
            return rc;
    }
    return 0;
}

static void score_math(const qw_scorer *s, const cJSON *rec, const char *completion, qw_score *out)
{
    cJSON *g = cJSON_GetObjectItemCaseSensitive(rec, s->answer_field);
    qw_buf gold = {0}, got = {0};
    if (cJSON_IsString(g)) qw_math_gold(g->valuestring, strlen(g->valuestring), &gold);
    else if (g->valuestring) qw_buf_adds(&gold, g->valuestring);   /* the number's literal */
    else qw_chat_float(g->valuedouble, &gold);
    qw_math_form f = qw_math_extract(completion, strlen(completion), &got);
    out->value[QW_VER_MATH] = f != QW_MATH_NONE && qw_math_equal(got.p ? got.p : "", got.n, gold.p ? gold.p : "", gold.n);
    if (f != QW_MATH_NONE) out->extracted = qw_strdup(qw_buf_cstr(&got));
    qw_buf_free(&gold);
    qw_buf_free(&got);
}

int qw_score_local(const qw_scorer *s, const cJSON *rec, const char *completion, qw_score *out)
{
    if (s->uses[QW_VER_MATH]) score_math(s, rec, completion, out);
    if (s->uses[QW_VER_THINK]) out->value[QW_VER_THINK] = qw_think_format(completion);
    if (s->uses[QW_VER_CODE]) {
        int rc = qw_code_run(&s->sandbox, cJSON_GetObjectItemCaseSensitive(rec, "prompt")->valuestring, completion,
                             cJSON_GetObjectItemCaseSensitive(rec, "test")->valuestring,
                             cJSON_GetObjectItemCaseSensitive(rec, "entry_point")->valuestring, &out->code);
        if (rc) return rc;
        out->value[QW_VER_CODE] = out->code.verdict == QW_CODE_PASSED;
    }
    return 0;
}

int qw_score_cmd(qw_coproc *cp, const char *line, size_t len, double timeout_s, const char *where, qw_score *out)
{
    qw_buf reply = {0};
    int rc = qw_coproc_ask(cp, line, len, timeout_s, where, &reply);
    if (rc) return rc;
    cJSON *j = qw_chat_json_parse(reply.p ? reply.p : "", reply.n, NULL);
    cJSON *r = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "reward") : NULL;
    if (!cJSON_IsNumber(r)) {
        rc = qw_error(QW_EXIT_DATA, "%s: the reward program's reply is not a JSON object with a number \"reward\": '%.200s'",
                      where, qw_buf_cstr(&reply));
        cJSON_Delete(j);
    } else {
        out->reply = j;
        out->value[QW_VER_CMD] = r->valuedouble;
    }
    qw_buf_free(&reply);
    return rc;
}

double qw_score_total(const qw_scorer *s, const qw_score *sc)
{
    if (s->n == 1) return sc->value[s->kind[0]];
    double total = 0;
    for (int v = 0; v < s->n; v++) total += s->weight[v] * sc->value[s->kind[v]];
    return total;
}

/* ---- output: the line as read, with the new fields before its closing brace ---- */

typedef struct {
    const char *key;
    qw_buf val;
} field;

static void add_field(field *f, int *n, const char *key)
{
    f[*n].key = key;
    memset(&f[*n].val, 0, sizeof f[*n].val);
    (*n)++;
}

static void add_string(qw_buf *b, const char *s)
{
    cJSON *j = cJSON_CreateString(s);
    qw_chat_tojson(j, b);
    cJSON_Delete(j);
}

void qw_score_format(const qw_scorer *s, const qw_score *sc, const cJSON *rec, const char *line, size_t len, qw_buf *b)
{
    field f[64];
    int nf = 0;
    add_field(f, &nf, "reward");
    qw_chat_float(qw_score_total(s, sc), &f[nf - 1].val);
    if (s->n > 1) {
        add_field(f, &nf, "rewards");
        qw_buf *r = &f[nf - 1].val;
        qw_buf_addc(r, '{');
        for (int v = 0; v < s->n; v++) {
            if (v) qw_buf_adds(r, ", ");
            add_string(r, qw_verifier_names[s->kind[v]]);
            qw_buf_adds(r, ": ");
            qw_chat_float(sc->value[s->kind[v]], r);
        }
        qw_buf_addc(r, '}');
    }
    if (s->uses[QW_VER_MATH]) {
        add_field(f, &nf, "extracted");
        if (sc->extracted) add_string(&f[nf - 1].val, sc->extracted);
        else qw_buf_adds(&f[nf - 1].val, "null");
    }
    if (s->uses[QW_VER_CODE]) {
        add_field(f, &nf, "verdict");
        add_string(&f[nf - 1].val, qw_code_verdict_name(sc->code.verdict));
        add_field(f, &nf, "output");
        add_string(&f[nf - 1].val, sc->code.output ? sc->code.output : "");
    }
    if (sc->reply)   /* the reward program's other fields, unless ours carry the name */
        for (cJSON *x = sc->reply->child; x && nf < 64; x = x->next) {
            int taken = 0;
            for (int k = 0; k < nf; k++) if (!strcmp(f[k].key, x->string)) taken = 1;
            if (taken) continue;
            add_field(f, &nf, x->string);
            qw_chat_tojson(x, &f[nf - 1].val);
        }
    int clash = 0;
    for (int k = 0; k < nf; k++) if (cJSON_GetObjectItemCaseSensitive(rec, f[k].key)) clash = 1;
    int first = 1;
    if (!clash) {   /* the record's own bytes, unchanged */
        size_t n = len;
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r')) n--;
        qw_buf_add(b, line, n - 1);   /* without its '}' */
        first = rec->child == NULL;
    } else {        /* rebuilt: a field of ours replaces the record's in place, as a Python dict update does */
        qw_buf_addc(b, '{');
        for (cJSON *x = rec->child; x; x = x->next) {
            if (!first) qw_buf_adds(b, ", ");
            first = 0;
            add_string(b, x->string);
            qw_buf_adds(b, ": ");
            int k = 0;
            while (k < nf && (!f[k].key || strcmp(f[k].key, x->string))) k++;
            if (k < nf) {
                qw_buf_add(b, f[k].val.p, f[k].val.n);
                f[k].key = NULL;
            } else {
                qw_chat_tojson(x, b);
            }
        }
    }
    for (int k = 0; k < nf; k++) {
        if (f[k].key) {
            if (!first) qw_buf_adds(b, ", ");
            first = 0;
            add_string(b, f[k].key);
            qw_buf_adds(b, ": ");
            qw_buf_add(b, f[k].val.p, f[k].val.n);
        }
        qw_buf_free(&f[k].val);
    }
    qw_buf_adds(b, "}\n");
}

void qw_score_free(qw_score *sc)
{
    free(sc->extracted);
    cJSON_Delete(sc->reply);
    qw_code_result_free(&sc->code);
    memset(sc, 0, sizeof *sc);
}
