/* fuzz_chat.c — one chat record (libcore/chat.c): parsed with number
 * literals kept, its "messages" (or the record itself, when it is an array)
 * and "tools" rendered with Qwen3's template in every option combination,
 * with the spans of the assistant turns (what SFT masks are built from)
 * checked against the text; and the record printed with tojson. */
#include "fuzz.h"

#include "qw/chat.h"

#define WHERE "'chat.jsonl': line 1"

static const char prefix[] = "earlier text\n";
static const char turn_open[] = "<|im_start|>assistant\n", turn_close[] = "<|im_end|>";

static void render(const cJSON *messages, const cJSON *tools, int gen, int think_off)
{
    qw_chat_opts o = {gen, think_off, WHERE};
    qw_buf out = {0};
    qw_chat_spans spans = {0};
    qw_buf_adds(&out, prefix);
    int rc = qw_chat_render(messages, tools, &o, &out, &spans);
    fz_expect(rc, FZ_DATA, WHERE);
    if (rc && (out.n != sizeof prefix - 1 || spans.n)) fz_fatal("a failed render changed its output", rc);
    size_t assistants = 0;
    for (const cJSON *m = rc ? NULL : messages->child; m; m = m->next) {
        const cJSON *role = NULL;   /* of duplicated keys the last, as the template reads them */
        for (const cJSON *k = m->child; k; k = k->next)
            if (k->string && !strcmp(k->string, "role")) role = k;
        assistants += cJSON_IsString(role) && !strcmp(role->valuestring, "assistant");
    }
    if (!rc && spans.n != assistants) fz_fatal("not one span per assistant message", 0);
    size_t prev = sizeof prefix - 1, lo = sizeof turn_open - 1, lc = sizeof turn_close - 1;
    for (size_t i = 0; i < spans.n; i++) {
        qw_chat_span s = spans.v[i];
        if (s.start < prev + lo || s.end < s.start + lc || s.end > out.n ||
            memcmp(out.p + s.start - lo, turn_open, lo) || memcmp(out.p + s.end - lc, turn_close, lc))
            fz_fatal("a span that is not an assistant turn", 0);
        prev = s.end;
    }
    qw_chat_spans_free(&spans);
    qw_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qw_error_clear();
    cJSON *rec = qw_chat_json_parse((const char *)data, size, WHERE);
    if (!rec) {
        if (!qw_error_status()) fz_fatal("no tree and no error", 0);
        fz_expect(qw_error_status(), FZ_DATA, WHERE);
        return 0;
    }
    const cJSON *messages = cJSON_IsArray(rec) ? rec : cJSON_GetObjectItemCaseSensitive(rec, "messages");
    const cJSON *tools = cJSON_IsObject(rec) ? cJSON_GetObjectItemCaseSensitive(rec, "tools") : NULL;
    for (int k = 0; k < 4; k++) render(messages, tools, k & 1, k >> 1);
    qw_buf json = {0};
    qw_chat_tojson(rec, &json);
    qw_buf_free(&json);
    cJSON_Delete(rec);
    return 0;
}
