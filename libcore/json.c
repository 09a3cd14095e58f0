/* json.c — token-id arrays of JSON records (qw/json.h). */
#include "qw/json.h"

#include <math.h>

#include "qw/cli.h"

int qw_json_ids(const cJSON *a, const char *name, const char *where, int vocab, int flags, qw_ids *out)
{
    if (!a) return qw_error(QW_EXIT_DATA, "%s: missing \"%s\"", where, name);
    if (!cJSON_IsArray(a)) return qw_error(QW_EXIT_DATA, "%s: \"%s\" is not an array of token ids", where, name);
    if (!a->child && (flags & QW_JSON_IDS_NONEMPTY)) return qw_error(QW_EXIT_DATA, "%s: \"%s\" is empty", where, name);
    int i = 0;
    for (const cJSON *x = a->child; x; x = x->next, i++) {
        double d = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        if (!(d == floor(d))) return qw_error(QW_EXIT_DATA, "%s: \"%s\"[%d] is not an integer token id", where, name, i);
        if (d < 0 || d >= vocab)
            return qw_error(QW_EXIT_DATA, "%s: \"%s\"[%d] = %.0f is outside the model's vocabulary (%d): another tokenizer?",
                            where, name, i, d, vocab);
        qw_ids_push(out, (int32_t)d);
    }
    qw_ids_reserve(out, 1);   /* a non-NULL array, even when empty */
    return 0;
}
