/* test_chat.c — the Qwen3 chat template in C, tojson, and JSON parsing.
 *
 *   test_chat                       the unit cases below
 *   test_chat render CASES OUTDIR   render each case of a JSONL file ({"name",
 *                                   "messages", "tools", "add_generation_prompt",
 *                                   "enable_thinking"}) to OUTDIR/NAME.txt and
 *                                   its assistant spans to OUTDIR/NAME.spans
 *   test_chat tojson VALUES OUTDIR  tojson of each {"name", "value"} line
 *   test_chat template              print qw_chat_qwen3_template
 * tests/tools/test_chat.sh drives the modes with arguments against the Jinja
 * and Python references. */
#include "qwtest.h"
#include "qw/buf.h"
#include "qw/chat.h"
#include "qw/cli.h"

/* Render a conversation written as JSON; the text, or NULL on error. */
static const char *render(const char *json, const char *tools, int agp, int thinking_off,
                          qw_chat_spans *spans)
{
    static qw_buf out;
    out.n = 0;
    cJSON *m = qw_chat_json_parse(json, strlen(json), NULL);
    cJSON *t = tools ? qw_chat_json_parse(tools, strlen(tools), NULL) : NULL;
    qw_chat_opts opt = {agp, thinking_off, "'t.jsonl': line 1"};
    int st = qw_chat_render(m, t, &opt, &out, spans);
    cJSON_Delete(m);
    cJSON_Delete(t);
    return st ? NULL : qw_buf_cstr(&out);
}

static const char *tojson(const char *json)
{
    static qw_buf out;
    out.n = 0;
    cJSON *v = qw_chat_json_parse(json, strlen(json), NULL);
    if (!v) return NULL;
    qw_chat_tojson(v, &out);
    cJSON_Delete(v);
    return qw_buf_cstr(&out);
}

TEST(plain_turns)
{
    CHECK_STR(render("[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U\"},"
                     "{\"role\":\"assistant\",\"content\":\"A\"},{\"role\":\"user\",\"content\":\"V\"}]",
                     NULL, 1, 0, NULL),
              "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
              "<|im_start|>assistant\nA<|im_end|>\n<|im_start|>user\nV<|im_end|>\n<|im_start|>assistant\n");
    CHECK_STR(render("[{\"role\":\"user\",\"content\":\"U\"}]", NULL, 1, 1, NULL),
              "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    /* enable_thinking=false changes nothing without the generation prompt */
    CHECK_STR(render("[{\"role\":\"user\",\"content\":\"U\"}]", NULL, 0, 1, NULL), "<|im_start|>user\nU<|im_end|>\n");
}

/* Qwen3-VL's content parts: text as is, each image as its three tokens */
TEST(image_parts)
{
    const char *m = "[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"image\":\"a.png\"},"
                    "{\"type\":\"text\",\"text\":\"what is it?\"},{\"image\":\"b.png\"}]},"
                    "{\"role\":\"assistant\",\"content\":\"a cat\"}]";
    CHECK_STR(render(m, NULL, 0, 0, NULL),
              "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>what is it?"
              "<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\na cat<|im_end|>\n");
    cJSON *j = qw_chat_json_parse(m, strlen(m), NULL);
    const cJSON *parts[4];
    CHECK(qw_chat_images(j, parts, 4) == 2);
    CHECK_STR(qw_chat_part_image(parts[0]), "a.png");
    CHECK_STR(qw_chat_part_image(parts[1]), "b.png");
    cJSON_Delete(j);
}

TEST(reasoning_kept_only_after_last_query)
{
    const char *conv =
        "[{\"role\":\"user\",\"content\":\"q1\"},"
        "{\"role\":\"assistant\",\"content\":\"<think>\\nr1\\n</think>\\n\\na1\"},"
        "{\"role\":\"user\",\"content\":\"q2\"},"
        "{\"role\":\"assistant\",\"content\":\"\\n<think>\\n\\n r2 \\n</think>\\n\\n a2\"}]";
    CHECK_STR(render(conv, NULL, 0, 0, NULL),
              "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n"
              "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n<think>\n r2 \n</think>\n\n a2<|im_end|>\n");
    /* the last turn always gets a think block, even an empty one */
    CHECK_STR(render("[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]",
                     NULL, 0, 0, NULL),
              "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\na<|im_end|>\n");
    /* reasoning_content wins, and the content is then taken as it is */
    CHECK_STR(render("[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
                     "\"content\":\"x</think>y\",\"reasoning_content\":\"\\nR\\n\\n\"}]", NULL, 0, 0, NULL),
              "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nR\n</think>\n\nx</think>y<|im_end|>\n");
    /* several blocks: reasoning after the last <think> before the first
     * </think>, content after the last </think> */
    CHECK_STR(render("[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
                     "\"content\":\"<think>a<think>b</think>c</think>\\nd\"}]", NULL, 0, 0, NULL),
              "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nb\n</think>\n\nd<|im_end|>\n");
}

TEST(tools_and_spans)
{
    const char *conv =
        "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"q\"},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        "{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1.0}}},"
        "{\"name\":\"g\",\"arguments\":\"{\\\"y\\\":2}\"}]},"
        "{\"role\":\"tool\",\"content\":\"r1\"},{\"role\":\"tool\",\"content\":\"r2\"},"
        "{\"role\":\"assistant\",\"content\":\"<think>t</think>done\"}]";
    qw_chat_spans spans = {0};
    const char *text = render(conv, "[{\"name\":\"f\",\"d\":\"é\\\"\"}]", 0, 0, &spans);
    const char *want =
        "<|im_start|>system\nS\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        "{\"name\": \"f\", \"d\": \"é\\\"\"}\n</tools>\n\nFor each function call, return a json object with "
        "function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nq<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1.0}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"g\", \"arguments\": {\"y\":2}}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n<think>\nt\n</think>\n\ndone<|im_end|>\n";
    CHECK_STR(text, want);
    CHECK(spans.n == 2);
    if (text && spans.n == 2) {
        const char *a1 = strstr(want, "<|im_start|>assistant\n<tool_call>") + 22;
        const char *a2 = strstr(want, "<|im_start|>assistant\n<think>") + 22;
        CHECK(spans.v[0].start == (size_t)(a1 - want));
        CHECK(spans.v[0].end == (size_t)(strstr(a1, "<|im_end|>") + 10 - want));
        CHECK(spans.v[1].start == (size_t)(a2 - want));
        CHECK(spans.v[1].end == strlen(want) - 1);
    }
    qw_chat_spans_free(&spans);
}

TEST(spans_offset_by_existing_output)
{
    qw_buf out = {0};
    qw_buf_adds(&out, "prefix");
    qw_chat_spans spans = {0};
    cJSON *m = cJSON_Parse("[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]");
    CHECK(qw_chat_render(m, NULL, NULL, &out, &spans) == 0);
    CHECK(spans.n == 1);
    if (spans.n == 1)
        CHECK(spans.v[0].end - spans.v[0].start == strlen("<think>\n\n</think>\n\na<|im_end|>") &&
              !memcmp(out.p + spans.v[0].start, "<think>", 7));
    cJSON_Delete(m);
    qw_buf_free(&out);
    qw_chat_spans_free(&spans);
}

/* Each bad conversation fails with QW_EXIT_DATA and this message. */
TEST(bad_conversations)
{
    static const char *const cases[][2] = {
        {"{}", "'messages' is an object, not an array"},
        {"[]", "no messages"},
        {"[1]", "messages[0] is a number, not an object"},
        {"[{\"content\":\"x\"}]", "messages[0]: missing 'role'"},
        {"[{\"role\":7,\"content\":\"x\"}]", "messages[0]: 'role' is a number, not a string"},
        {"[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"developer\",\"content\":\"x\"}]",
         "messages[1]: unknown role 'developer' (not system, user, assistant or tool)"},
        {"[{\"role\":\"tool\"}]", "messages[0]: missing 'content'"},
        {"[{\"role\":\"assistant\",\"content\":null}]",
         "messages[0]: 'content' is null, not a string (the Qwen3 template renders only string content)"},
        {"[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]",
         "messages[0]: 'content' is an array, not a string (the Qwen3 template renders only string content)"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"audio\",\"audio\":\"a.wav\"}]}]",
         "messages[0]: content[0] is not a text part {\"type\": \"text\", \"text\": STRING} or an image part "
         "{\"type\": \"image\", \"image\": PATH}"},
        {"[{\"role\":\"assistant\",\"content\":\"\",\"reasoning_content\":1}]",
         "messages[0]: 'reasoning_content' is a number, not a string"},
        {"[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":{}}]",
         "messages[0]: 'tool_calls' is an object, not an array"},
        {"[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[\"f\"]}]",
         "messages[0]: tool_calls[0] is a string, not an object"},
        {"[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":\"f\"}]}]",
         "messages[0]: tool_calls[0]: 'function' is a string, not an object"},
        {"[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"arguments\":{}}}]}]",
         "messages[0]: tool_calls[0]: missing 'name'"},
        {"[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":1,\"arguments\":{}}}]}]",
         "messages[0]: tool_calls[0]: 'name' is a number, not a string"},
        {"[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":1},"
         "{\"function\":{\"name\":\"f\"}}]}]", "messages[0]: tool_calls[1]: missing 'arguments'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        qw_buf out = {0};
        qw_chat_spans spans = {0};
        qw_buf_adds(&out, "kept");
        cJSON *m = cJSON_Parse(cases[i][0]);
        qw_chat_opts opt = {1, 0, "'t.jsonl': line 3"};
        int st = qw_chat_render(m, NULL, &opt, &out, &spans);
        char want[512];
        snprintf(want, sizeof want, "'t.jsonl': line 3: %s", cases[i][1]);
        CHECK_MSG(st == QW_EXIT_DATA, "case %zu: status %d", i, st);
        CHECK_STR(qw_error_msg(), want);
        CHECK(out.n == 4 && spans.n == 0);
        cJSON_Delete(m);
        qw_buf_free(&out);
    }
    qw_buf out = {0};
    CHECK(qw_chat_render(NULL, NULL, NULL, &out, NULL) == QW_EXIT_DATA);
    CHECK_STR(qw_error_msg(), "missing 'messages'");
    cJSON *m = cJSON_Parse("[{\"role\":\"user\",\"content\":\"x\"}]"), *t = cJSON_Parse("{\"a\":1}");
    CHECK(qw_chat_render(m, t, NULL, &out, NULL) == QW_EXIT_DATA);
    CHECK_STR(qw_error_msg(), "'tools' is an object, not an array");
    cJSON_Delete(m);
    cJSON_Delete(t);
    qw_buf_free(&out);
}

/* Expected strings are Python's json.dumps(json.loads(x), ensure_ascii=False). */
TEST(tojson_is_python_json_dumps)
{
    CHECK_STR(tojson("{\"b\":[1,2.5,{}],\"a\":{\"c\":null,\"d\":true,\"e\":false},\"f\":[]}"),
              "{\"b\": [1, 2.5, {}], \"a\": {\"c\": null, \"d\": true, \"e\": false}, \"f\": []}");
    CHECK_STR(tojson("[1.0, 1e-05, 1E16, 1e15, 0.1, -0.0, -0, 5e-324, 1.7976931348623157e308, 1e22, 2.5e-7,"
                     " 0.0001, 1.5E+3, 1e400, 12345678901234567890123, 5.9604644775390625e-08]"),
              "[1.0, 1e-05, 1e+16, 1000000000000000.0, 0.1, -0.0, 0, 5e-324, 1.7976931348623157e+308, 1e+22,"
              " 2.5e-07, 0.0001, 1500.0, Infinity, 12345678901234567890123, 5.960464477539063e-08]");
    CHECK_STR(tojson("{\"a\":1,\"b\":2,\"a\":3}"), "{\"a\": 3, \"b\": 2}");
    CHECK_STR(tojson("\"\\u0001\\u001f\\u007f\\\"\\\\\\b\\f\\n\\r\\t\\u00e9中😀\\u2028\\/\""),
              "\"\\u0001\\u001f\x7f\\\"\\\\\\b\\f\\n\\r\\té中😀\xe2\x80\xa8/\"");
    /* numbers without a kept literal: built in C, or parsed by plain cJSON */
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber(3));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(-0.0));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(0.5));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(1e20));
    qw_buf out = {0};
    qw_chat_tojson(a, &out);
    CHECK_STR(qw_buf_cstr(&out), "[3, 0, 0.5, 1e+20]");
    cJSON_Delete(a);
    qw_buf_free(&out);
}

TEST(json_parse_refuses_what_python_refuses)
{
    static const char *const cases[][2] = {
        {"[01]", "'x': bad number '01' at byte 1"},
        {"[1.]", "'x': bad number '1.' at byte 1"},
        {"{\"a\":-}", "'x': bad JSON at byte 5"},
        {"[\"a\tb\"]", "'x': control character in a string at byte 3"},
        {"[\"\\\"\",\"a\\u0000\"]", "'x': '\\u0000' in a string at byte 8: not supported"},
        {"[1] x", "'x': text after the JSON value at byte 4"},
        {"", "'x': bad JSON at byte 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cJSON *v = qw_chat_json_parse(cases[i][0], strlen(cases[i][0]), "'x'");
        CHECK_MSG(v == NULL, "case %zu parsed", i);
        CHECK(qw_error_status() == QW_EXIT_DATA);
        CHECK_STR(qw_error_msg(), cases[i][1]);
        cJSON_Delete(v);
    }
    /* the length bounds the text; trailing whitespace is fine */
    cJSON *v = qw_chat_json_parse("[2.50] \r\nGARBAGE", 9, NULL);
    CHECK(v && v->child && !strcmp(v->child->valuestring, "2.50"));
    cJSON_Delete(v);
}

/* ---- modes for tests/tools/test_chat.sh ---------------------------------- */

/* Call fn on each non-blank line of a JSONL file, parsed, with its name. */
static int each_case(const char *path, const char *outdir,
                     int (*fn)(const cJSON *c, const char *where, FILE *txt, FILE *spans))
{
    FILE *f = fopen(path, "r");
    if (!f) qw_die(QW_EXIT_FAIL, "'%s': cannot open", path);
    char *line = NULL, where[4200], file[4200];
    size_t cap = 0;
    ssize_t len;
    int st = 0;
    for (long no = 1; !st && (len = getline(&line, &cap, f)) > 0; no++) {
        snprintf(where, sizeof where, "'%s': line %ld", path, no);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (!len) continue;
        cJSON *c = qw_chat_json_parse(line, (size_t)len, where);
        if (!c) return qw_error_status();
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        if (!cJSON_IsString(name)) qw_die(QW_EXIT_DATA, "%s: no 'name'", where);
        snprintf(file, sizeof file, "%s/%s.txt", outdir, name->valuestring);
        FILE *txt = fopen(file, "w");
        snprintf(file, sizeof file, "%s/%s.spans", outdir, name->valuestring);
        FILE *spans = fopen(file, "w");
        if (!txt || !spans) qw_die(QW_EXIT_FAIL, "'%s': cannot write", file);
        st = fn(c, where, txt, spans);
        fclose(txt);
        fclose(spans);
        cJSON_Delete(c);
    }
    free(line);
    fclose(f);
    return st;
}

static int render_case(const cJSON *c, const char *where, FILE *txt, FILE *spans_f)
{
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(c, "enable_thinking");
    qw_chat_opts opt = {cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt")),
                        cJSON_IsFalse(think), where};
    qw_buf out = {0};
    qw_chat_spans spans = {0};
    int st = qw_chat_render(cJSON_GetObjectItemCaseSensitive(c, "messages"),
                            cJSON_GetObjectItemCaseSensitive(c, "tools"), &opt, &out, &spans);
    fwrite(out.p, 1, out.n, txt);
    for (size_t i = 0; i < spans.n; i++) fprintf(spans_f, "%zu %zu\n", spans.v[i].start, spans.v[i].end);
    qw_buf_free(&out);
    qw_chat_spans_free(&spans);
    return st;
}

static int tojson_case(const cJSON *c, const char *where, FILE *txt, FILE *spans)
{
    qw_buf out = {0};
    qw_chat_tojson(cJSON_GetObjectItemCaseSensitive(c, "value"), &out);
    fwrite(out.p, 1, out.n, txt);
    qw_buf_free(&out);
    return 0;
}

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    if (argc == 4 && (!strcmp(argv[1], "render") || !strcmp(argv[1], "tojson"))) {
        if (each_case(argv[2], argv[3], !strcmp(argv[1], "render") ? render_case : tojson_case)) qw_die_last();
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "template")) {
        fputs(qw_chat_qwen3_template, stdout);
        return 0;
    }
    if (argc > 1) qw_die(QW_EXIT_USAGE, "usage: test_chat [render CASES OUTDIR | tojson VALUES OUTDIR | template]");
    PLAN(8);
    RUN(plain_turns);
    RUN(image_parts);
    RUN(reasoning_kept_only_after_last_query);
    RUN(tools_and_spans);
    RUN(spans_offset_by_existing_output);
    RUN(bad_conversations);
    RUN(tojson_is_python_json_dumps);
    RUN(json_parse_refuses_what_python_refuses);
    return qwtest_finish();
}
