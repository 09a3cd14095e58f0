/* pref.c — preference pairs in token-id form (qw/pref.h). */
#define _GNU_SOURCE
#include "qw/pref.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "qw/cli.h"

/* The id array `key` of o into ids and n; empty allowed when allow_empty. */
static int ids_field(const cJSON *o, const char *key, int vocab, int allow_empty, const char *path, long line,
                     int32_t **ids, int *n)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!a) return qw_error(QW_EXIT_DATA, "'%s': line %ld: missing \"%s\"", path, line, key);
    if (!cJSON_IsArray(a)) return qw_error(QW_EXIT_DATA, "'%s': line %ld: \"%s\" is not an array of token ids", path, line, key);
    int k = cJSON_GetArraySize(a);
    if (k == 0 && !allow_empty) return qw_error(QW_EXIT_DATA, "'%s': line %ld: \"%s\" is empty (a completion needs a token)", path, line, key);
    int32_t *v = malloc((size_t)(k ? k : 1) * sizeof *v);
    if (!v) return qw_error(QW_EXIT_FAIL, "out of memory");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (!(d >= 0 && d < vocab && d == floor(d))) {
            free(v);
            return qw_error(QW_EXIT_DATA, "'%s': line %ld: \"%s\"[%d] is not a token id in [0, %d)", path, line, key, i, vocab);
        }
        v[i++] = (int32_t)d;
    }
    *ids = v;
    *n = k;
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

int qw_pref_parse_ids(const char *text, const char *path, long line, int vocab, qw_pref_pair *out)
{
    memset(out, 0, sizeof *out);
    cJSON *o = cJSON_Parse(text);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return qw_error(QW_EXIT_DATA, "'%s': line %ld: not a JSON object", path, line);
    }
    int rc = ids_field(o, "prompt_ids", vocab, 1, path, line, &out->prompt, &out->n_prompt);
    if (!rc) rc = ids_field(o, "chosen_ids", vocab, 0, path, line, &out->chosen, &out->n_chosen);
    if (!rc) rc = ids_field(o, "rejected_ids", vocab, 0, path, line, &out->rejected, &out->n_rejected);
    if (!rc) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "ref_chosen_logp");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "ref_rejected_logp");
        if (c || r) {
            if (!cJSON_IsNumber(c) || !cJSON_IsNumber(r))
                rc = qw_error(QW_EXIT_DATA, "'%s': line %ld: give both \"ref_chosen_logp\" and \"ref_rejected_logp\" as numbers, or neither",
                              path, line);
            else if (!(c->valuedouble <= 0) || !(r->valuedouble <= 0))
                rc = qw_error(QW_EXIT_DATA, "'%s': line %ld: a reference log-prob is positive", path, line);
            else {
                out->has_ref = 1;
                out->ref_c = c->valuedouble;
                out->ref_r = r->valuedouble;
            }
        }
    }
    cJSON_Delete(o);
    if (rc) qw_pref_pair_free(out);
    return rc;
}

void qw_pref_free(qw_pref_set *s)
{
    if (!s) return;
    for (long i = 0; i < s->n; i++) qw_pref_pair_free(&s->pairs[i]);
    free(s->pairs);
    s->pairs = NULL;
    s->n = 0;
}

int qw_pref_read_ids(const char *path, int vocab, qw_pref_set *out)
{
    out->pairs = NULL;
    out->n = 0;
    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) return qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(errno));
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
        rc = qw_pref_parse_ids(buf, path, line, vocab, &out->pairs[out->n]);
        if (!rc) out->n++;
    }
    if (!rc && ferror(in)) rc = qw_error(QW_EXIT_FAIL, "'%s': read error", path);
    if (!rc && out->n == 0) rc = qw_error(QW_EXIT_DATA, "'%s': no preference pairs", path);
    free(buf);
    if (in != stdin) fclose(in);
    if (rc) qw_pref_free(out);
    return rc;
}
