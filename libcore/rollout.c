/* rollout.c — rollout records (qw/rollout.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/chat.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/json.h"
#include "qw/rollout.h"

int qw_rollout_eos_ids(const char *dir, const qw_config *c, qw_ids *out)
{
    char *path = qw_path_join(dir, "generation_config.json");
    qw_buf b = {0};
    int found = 0, rc = qw_read_file(path, &b, &found);
    if (!rc && found) {
        cJSON *j = cJSON_ParseWithLength(b.p, b.n), *e = j ? cJSON_GetObjectItemCaseSensitive(j, "eos_token_id") : NULL;
        if (cJSON_IsNumber(e)) qw_ids_push(out, (int32_t)e->valuedouble);
        else if (cJSON_IsArray(e)) {
            cJSON *x;
            cJSON_ArrayForEach(x, e) if (cJSON_IsNumber(x)) qw_ids_push(out, (int32_t)x->valuedouble);
        }
        cJSON_Delete(j);
    }
    if (!rc && !out->n && c->eos_token_id >= 0) qw_ids_push(out, c->eos_token_id);
    for (size_t i = 0; !rc && i < out->n; i++)
        if (out->v[i] < 0 || out->v[i] >= c->vocab_size)
            rc = qw_error(QW_EXIT_DATA, "'%s': eos_token_id %d is outside the vocabulary (%d)", found ? path : dir,
                          out->v[i], c->vocab_size);
    qw_buf_free(&b);
    free(path);
    return rc;
}

int qw_rollout_text(const qw_tok *tok, const qw_completion *c, qw_buf *out)
{
    int32_t *ids = qw_malloc((c->n ? c->n : 1) * sizeof *ids);
    int m = 0;
    for (int i = 0; i < c->n; i++)
        if (qw_tok_id_to_token(tok, c->ids[i])) ids[m++] = c->ids[i];
    int rc = qw_tok_decode(tok, ids, m, 1, out);
    free(ids);
    return rc;
}

static void add_f(qw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_f(qw_buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    qw_buf_add(b, tmp, (size_t)n);
}

static void add_ids(qw_buf *b, const int32_t *ids, size_t n)
{
    qw_buf_addc(b, '[');
    for (size_t i = 0; i < n; i++) add_f(b, i ? ", %d" : "%d", ids[i]);
    qw_buf_addc(b, ']');
}

static void add_floats(qw_buf *b, const float *x, int n)
{
    qw_buf_addc(b, '[');
    for (int i = 0; i < n; i++) {
        if (isfinite(x[i])) add_f(b, i ? ", %.9g" : "%.9g", x[i]);
        else add_f(b, i ? ", %s" : "%s", "null");
    }
    qw_buf_addc(b, ']');
}

static void add_str(qw_buf *b, const char *s)
{
    cJSON *j = cJSON_CreateString(s);
    qw_chat_tojson(j, b);
    cJSON_Delete(j);
}

static const char *const own_keys[] = { "idx", "sample", "prompt", "prompt_ids", "completion", "completion_ids",
                                        "logprobs", "raw_logprobs", "finish_reason", "forced_at", NULL };

static int own_key(const char *k)
{
    for (int i = 0; own_keys[i]; i++) if (!strcmp(k, own_keys[i])) return 1;
    return 0;
}

int qw_rollout_record(qw_buf *b, long idx, int sample, const char *prompt, const int32_t *prompt_ids,
                      size_t n_prompt, const qw_tok *tok, const qw_completion *c, const cJSON *rec)
{
    add_f(b, "{\"idx\": %ld, \"sample\": %d", idx, sample);
    if (prompt) { qw_buf_adds(b, ", \"prompt\": "); add_str(b, prompt); }
    qw_buf_adds(b, ", \"prompt_ids\": ");
    add_ids(b, prompt_ids, n_prompt);
    if (tok) {
        qw_buf t = {0};
        if (qw_rollout_text(tok, c, &t)) { qw_buf_free(&t); return QW_EXIT_DATA; }
        qw_buf_adds(b, ", \"completion\": ");
        add_str(b, qw_buf_cstr(&t));
        qw_buf_free(&t);
    }
    qw_buf_adds(b, ", \"completion_ids\": ");
    add_ids(b, c->ids, c->n);
    qw_buf_adds(b, ", \"logprobs\": ");
    add_floats(b, c->logprobs, c->n);
    qw_buf_adds(b, ", \"raw_logprobs\": ");
    add_floats(b, c->raw_logprobs, c->n);
    add_f(b, ", \"finish_reason\": \"%s\"", c->finish == QW_FINISH_STOP ? "stop" : "length");
    if (c->forced_at >= 0) add_f(b, ", \"forced_at\": %d", c->forced_at);
    for (const cJSON *x = rec ? rec->child : NULL; x; x = x->next) {
        if (own_key(x->string)) continue;
        qw_buf_adds(b, ", ");
        cJSON *k = cJSON_CreateString(x->string);
        qw_chat_tojson(k, b);
        cJSON_Delete(k);
        qw_buf_adds(b, ": ");
        qw_chat_tojson(x, b);
    }
    qw_buf_adds(b, "}\n");
    return 0;
}

/* ---- prompts ---- */

void qw_prompts_free(qw_prompt_rec *v, long n)
{
    for (long i = 0; i < n; i++) {
        cJSON_Delete(v[i].rec);
        free(v[i].prompt);
        qw_ids_free(&v[i].ids);
    }
    free(v);
}

static int read_prompt(const char *s, size_t len, const qw_prompt_opts *o, const char *where, qw_prompt_rec *it)
{
    cJSON *rec = qw_chat_json_parse(s, len, where);
    if (!rec) return qw_error_status();
    it->rec = rec;
    if (!cJSON_IsObject(rec)) return qw_error(QW_EXIT_DATA, "%s: not a JSON object", where);
    cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
    cJSON *pi = cJSON_GetObjectItemCaseSensitive(rec, "prompt_ids");
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(rec, "messages");
    qw_buf text = {0};
    int rc = 0;
    if (o->chat) {
        if (!msgs) return qw_error(QW_EXIT_DATA, "%s: no \"messages\" (--chat)", where);
        qw_chat_opts co = { .add_generation_prompt = 1, .thinking_off = o->thinking_off, .where = where };
        if ((rc = qw_chat_render(msgs, cJSON_GetObjectItemCaseSensitive(rec, "tools"), &co, &text, NULL))) goto out;
    } else if (cJSON_IsString(p)) {
        qw_buf_adds(&text, p->valuestring);
    } else if (p) {
        return qw_error(QW_EXIT_DATA, "%s: \"prompt\" is not a string", where);
    } else if (pi) {
        if ((rc = qw_json_ids(pi, "prompt_ids", where, o->vocab_size, 0, &it->ids))) goto out;
    } else {
        return qw_error(QW_EXIT_DATA, "%s: no \"prompt\" (or \"prompt_ids\")", where);
    }
    if (!it->ids.n && (text.n || !pi)) {
        if (!o->tok) {
            rc = qw_error(QW_EXIT_USAGE, "%s: a text prompt and no tokenizer: give --tokenizer (the model directory has no "
                          "tokenizer.json)", where);
            goto out;
        }
        if (qw_tok_encode(o->tok, text.p ? text.p : "", text.n, &it->ids)) {
            rc = qw_error(QW_EXIT_DATA, "%s: %s", where, qw_error_msg());
            goto out;
        }
        it->prompt = qw_strdup(qw_buf_cstr(&text));
    } else if (o->tok) {
        if ((rc = qw_tok_decode(o->tok, it->ids.v, it->ids.n, 0, &text))) goto out;
        it->prompt = qw_strdup(qw_buf_cstr(&text));
    }
    if (!it->ids.n) rc = qw_error(QW_EXIT_DATA, "%s: the prompt is empty", where);
    else if (it->ids.n >= (size_t)o->max_context)
        rc = qw_error(QW_EXIT_DATA, "%s: the prompt has %zu tokens; the model's context is %d (max_position_embeddings), "
                      "so nothing is left to generate", where, it->ids.n, o->max_context);
out:
    qw_buf_free(&text);
    return rc;
}

int qw_prompts_read(const qw_buf *b, const qw_prompt_opts *o, qw_prompt_rec **out, long *n_out)
{
    qw_prompt_rec *v = NULL;
    long n = 0, cap = 0, line = 0;
    char where[4200];
    int rc = 0;
    for (size_t at = 0; at < b->n && !rc; line++) {
        const char *s = b->p + at, *nl = memchr(s, '\n', b->n - at);
        size_t len = nl ? (size_t)(nl - s) : b->n - at;
        at += len + (nl != NULL);
        if (len && s[len - 1] == '\r') len--;
        snprintf(where, sizeof where, "'%s': line %ld", o->src, line + 1);
        if (n == cap) v = qw_realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
        qw_prompt_rec *it = &v[n++];
        memset(it, 0, sizeof *it);
        it->line = line;
        rc = read_prompt(s, len, o, where, it);
    }
    if (rc) {
        qw_prompts_free(v, n);
        return rc;
    }
    *out = v, *n_out = n;
    return 0;
}
