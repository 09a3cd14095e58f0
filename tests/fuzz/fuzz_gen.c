/* fuzz_gen.c — one generative item or rollout record (libcore/eval_gen.c),
 * as qw-eval gen and score read it: parsed for every task, its completion
 * (or the input itself, as text) cut into a response with thinking on and
 * off, every filter's answer extracted and judged; and the Hendrycks
 * functions (last_boxed, remove_boxed, strip_string, is_equiv) and the
 * exact match on the text. */
#include "fuzz.h"

#include <cJSON.h>

#include "qw/eval.h"

static void score_text(qw_gen_task t, const qw_gen_item *it, const char *text)
{
    const char *const *names;
    int nf = qw_gen_task_filters(t, &names);
    for (int think = 0; think < 2; think++) {
        size_t a, n;
        qw_gen_response(t, text, think, &a, &n);
        if (a > strlen(text) || n > strlen(text) - a) fz_fatal("a response outside its completion", 0);
        if (t == QW_GEN_HUMANEVAL) continue;
        for (int f = 0; f < nf; f++) {
            char *p = qw_gen_extract(t, f, text + a, n);
            if (!p && t != QW_GEN_MATH) fz_fatal("no answer where the fallback is due", 0);
            if (it) {
                int ok = qw_gen_correct(t, it, p);
                if (ok != 0 && ok != 1) fz_fatal("a verdict that is not 0 or 1", ok);
            }
            free(p);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = strndup((const char *)data, size);   /* up to the first NUL, as a C string */
    if (!text) abort();
    cJSON *rec = cJSON_ParseWithLength((const char *)data, size);
    const cJSON *c = rec ? cJSON_GetObjectItemCaseSensitive(rec, "completion") : NULL;
    for (int t = QW_GEN_GSM8K; t <= QW_GEN_HUMANEVAL; t++) {
        qw_gen_item it;
        int rc = rec ? qw_gen_item_parse((qw_gen_task)t, rec, &it) : -1;
        if (rc > 0) fz_expect(rc, FZ_DATA, NULL);
        score_text((qw_gen_task)t, rc ? NULL : &it, cJSON_IsString(c) ? c->valuestring : text);
        if (!rc) qw_gen_item_free(&it);
    }
    char *boxed = qw_hendrycks_last_boxed(text), *inner = boxed ? qw_hendrycks_remove_boxed(boxed) : NULL, *s;
    if (!qw_hendrycks_strip_string(text, &s)) free(s);
    (void)qw_hendrycks_is_equiv(text, inner ? inner : "");
    (void)qw_gen_exact_match(text, inner ? inner : "[invalid]");
    free(boxed), free(inner), free(text);
    cJSON_Delete(rec);
    return 0;
}
