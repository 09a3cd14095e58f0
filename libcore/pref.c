/* pref.c — preference pairs in token-id form (qw/pref.h). */
#define _GNU_SOURCE
#include "qw/pref.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "qw/buf.h"
#include "qw/chat.h"
#include "qw/cli.h"
#include "qw/json.h"
#include "qw/tok.h"

static const char *nm(const char *path) { return strcmp(path, "-") ? path : "<stdin>"; }

/* The id array `key` of o into ids and n (qw/json.h); empty allowed when allow_empty. */
static int ids_field(const cJSON *o, const char *key, int vocab, int allow_empty, const char *path, long line,
                     int32_t **ids, int *n)
{
    char where[600];
    snprintf(where, sizeof where, "'%s': line %ld", path, line);
    qw_ids v = {0};
    int rc = qw_json_ids(cJSON_GetObjectItemCaseSensitive(o, key), key, where, vocab, allow_empty ? 0 : QW_JSON_IDS_NONEMPTY, &v);
    if (rc) {
        qw_ids_free(&v);
        return rc;
    }
    *ids = v.v;
    *n = (int)v.n;
    return 0;
}

void qw_pref_pair_free(qw_pref_pair *p)
{
    if (!p) return;
    free(p->prompt);
    free(p->chosen);
    free(p->rejected);
    memset(p, 0, sizeof *p);
}

/* The optional ref fields of o into out. */
static int ref_fields(const cJSON *o, const char *path, long line, qw_pref_pair *out)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "ref_chosen_logp");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "ref_rejected_logp");
    if (!c && !r) return 0;
    if (!cJSON_IsNumber(c) || !cJSON_IsNumber(r))
        return qw_error(QW_EXIT_DATA, "'%s': line %ld: give both \"ref_chosen_logp\" and \"ref_rejected_logp\" as numbers, or neither",
                        path, line);
    if (!(c->valuedouble <= 0) || !(r->valuedouble <= 0))
        return qw_error(QW_EXIT_DATA, "'%s': line %ld: a reference log-prob is positive", path, line);
    out->has_ref = 1;
    out->ref_c = c->valuedouble;
    out->ref_r = r->valuedouble;
    return 0;
}

static int from_ids(const cJSON *o, const char *path, long line, int vocab, qw_pref_pair *out)
{
    int rc = ids_field(o, "prompt_ids", vocab, 1, path, line, &out->prompt, &out->n_prompt);
    if (!rc) rc = ids_field(o, "chosen_ids", vocab, 0, path, line, &out->chosen, &out->n_chosen);
    if (!rc) rc = ids_field(o, "rejected_ids", vocab, 0, path, line, &out->rejected, &out->n_rejected);
    return rc;
}

/* Tokens of text[0..len) into a new array (plus eos when eos ≥ 0), each below vocab. */
static int encode(const qw_pref_text *tx, const char *text, size_t len, int32_t eos, int vocab, const char *path,
                  long line, const char *key, int32_t **ids, int *n)
{
    qw_ids v = {0};
    if (qw_tok_encode(tx->tok, text, len, &v)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qw_error_msg());
        qw_ids_free(&v);
        return qw_error(QW_EXIT_DATA, "'%s': line %ld: \"%s\": %s", path, line, key, msg);
    }
    if (eos >= 0) qw_ids_push(&v, eos);
    for (size_t i = 0; i < v.n; i++)
        if (v.v[i] < 0 || v.v[i] >= vocab) {
            int32_t bad = v.v[i];
            qw_ids_free(&v);
            return qw_error(QW_EXIT_DATA, "'%s': line %ld: \"%s\" has token %d, outside the model's vocabulary (%d): another tokenizer?",
                            path, line, key, bad, vocab);
        }
    qw_ids_reserve(&v, 1);   /* a non-NULL array */
    *ids = v.v;
    *n = (int)v.n;
    return 0;
}

/* Render msgs (and, when tail is not NULL, msgs ++ tail) with the chat template. */
static int render(const cJSON *msgs, const cJSON *tail, int gen, const char *where, qw_buf *out)
{
    cJSON *all = cJSON_Duplicate(msgs, 1), *x;
    if (tail) cJSON_ArrayForEach(x, tail) cJSON_AddItemToArray(all, cJSON_Duplicate(x, 1));
    qw_chat_opts co = {.add_generation_prompt = gen, .where = where};
    int rc = qw_chat_render(all, NULL, &co, out, NULL);
    cJSON_Delete(all);
    return rc;
}

static int from_text(const cJSON *o, const char *path, long line, int vocab, const qw_pref_text *tx, qw_pref_pair *out)
{
    static const char *const keys[3] = {"prompt", "chosen", "rejected"};
    const cJSON *f[3];
    for (int i = 0; i < 3; i++) {
        f[i] = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (!f[i])
            return qw_error(QW_EXIT_DATA, "'%s': line %ld: missing \"%s\" (a pair has prompt_ids, chosen_ids, rejected_ids or prompt, chosen, rejected)",
                            path, line, keys[i]);
    }
    int chat = cJSON_IsArray(f[0]);
    for (int i = 0; i < 3; i++)
        if (chat ? !cJSON_IsArray(f[i]) : !cJSON_IsString(f[i]))
            return qw_error(QW_EXIT_DATA, "'%s': line %ld: \"%s\" is not %s (as \"prompt\" is)", path, line, keys[i],
                            chat ? "a list of messages" : "a string");
    if (!tx || !tx->tok)
        return qw_error(QW_EXIT_DATA, "'%s': line %ld: a text pair needs the tokenizer (--tokenizer)", path, line);
    int32_t **dst[3] = {&out->prompt, &out->chosen, &out->rejected};
    int *len[3] = {&out->n_prompt, &out->n_chosen, &out->n_rejected};
    if (!chat) {
        for (int i = 0; i < 3; i++) {
            const char *t = f[i]->valuestring;
            int rc = encode(tx, t, strlen(t), i ? tx->eos : -1, vocab, path, line, keys[i], dst[i], len[i]);
            if (rc) return rc;
        }
    } else {
        char where[600];
        snprintf(where, sizeof where, "'%s': line %ld: \"prompt\"", path, line);
        qw_buf p = {0};
        int rc = render(f[0], NULL, 1, where, &p);
        if (!rc) rc = encode(tx, p.p ? p.p : "", p.n, -1, vocab, path, line, keys[0], dst[0], len[0]);
        for (int i = 1; i < 3 && !rc; i++) {
            qw_buf full = {0};
            snprintf(where, sizeof where, "'%s': line %ld: \"%s\"", path, line, keys[i]);
            rc = render(f[0], f[i], 0, where, &full);
            if (!rc && (full.n < p.n || memcmp(full.p, p.p, p.n)))
                rc = qw_error(QW_EXIT_DATA, "'%s': line %ld: the rendered prompt + \"%s\" does not start with the rendered prompt",
                              path, line, keys[i]);
            if (!rc) rc = encode(tx, full.p + p.n, full.n - p.n, -1, vocab, path, line, keys[i], dst[i], len[i]);
            qw_buf_free(&full);
        }
        qw_buf_free(&p);
        if (rc) return rc;
    }
    for (int i = 1; i < 3; i++)
        if (*len[i] == 0) return qw_error(QW_EXIT_DATA, "'%s': line %ld: \"%s\" is empty (a completion needs a token)", path, line, keys[i]);
    return 0;
}

int qw_pref_parse(const char *text, const char *path, long line, int vocab, const qw_pref_text *tx, qw_pref_pair *out)
{
    memset(out, 0, sizeof *out);
    path = nm(path);
    cJSON *o = cJSON_Parse(text);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return qw_error(QW_EXIT_DATA, "'%s': line %ld: not a JSON object", path, line);
    }
    int rc = cJSON_GetObjectItemCaseSensitive(o, "prompt_ids") || !cJSON_GetObjectItemCaseSensitive(o, "prompt")
                 ? from_ids(o, path, line, vocab, out)
                 : from_text(o, path, line, vocab, tx, out);
    if (!rc) rc = ref_fields(o, path, line, out);
    out->line = line;
    cJSON_Delete(o);
    if (rc) qw_pref_pair_free(out);
    return rc;
}

int qw_pref_parse_ids(const char *text, const char *path, long line, int vocab, qw_pref_pair *out)
{
    return qw_pref_parse(text, path, line, vocab, NULL, out);
}

void qw_pref_free(qw_pref_set *s)
{
    if (!s) return;
    for (long i = 0; i < s->n; i++) qw_pref_pair_free(&s->pairs[i]);
    free(s->pairs);
    s->pairs = NULL;
    s->n = 0;
}

int qw_pref_read_ids(const char *path, int vocab, qw_pref_set *out) { return qw_pref_read(path, vocab, NULL, out); }

int qw_pref_read(const char *path, int vocab, const qw_pref_text *tx, qw_pref_set *out)
{
    out->pairs = NULL;
    out->n = 0;
    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) return qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(errno));
    const char *name = nm(path);
    char *buf = NULL;
    size_t cap = 0, have = 0;
    long line = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&buf, &cap, in)) > 0) {
        line++;
        if (strspn(buf, " \t\r\n") == (size_t)len) continue;
        if ((size_t)out->n == have) {
            size_t nh = have ? 2 * have : 64;
            qw_pref_pair *np = realloc(out->pairs, nh * sizeof *np);
            if (!np) { rc = qw_error(QW_EXIT_FAIL, "out of memory"); break; }
            out->pairs = np;
            have = nh;
        }
        rc = qw_pref_parse(buf, path, line, vocab, tx, &out->pairs[out->n]);
        if (!rc) out->n++;
    }
    if (!rc && ferror(in)) rc = qw_error(QW_EXIT_FAIL, "'%s': read error", name);
    if (!rc && out->n == 0) rc = qw_error(QW_EXIT_DATA, "'%s': no preference pairs", name);
    free(buf);
    if (in != stdin) fclose(in);
    if (rc) qw_pref_free(out);
    return rc;
}
