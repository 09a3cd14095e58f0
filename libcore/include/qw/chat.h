/* qw/chat.h — the Qwen3 chat template, rendered in C.
 *
 * qw_chat_render turns a conversation into the exact bytes that Qwen3's
 * Jinja chat template (qw_chat_qwen3_template below) produces when
 * Hugging Face transformers renders it (apply_chat_template with
 * tokenize=False).  transformers is the authority: where the Jinja
 * renderer used in tests (@huggingface/jinja) differs from Python, this
 * code follows Python (tests/tools/test_chat.sh says where).
 *
 * What the template does, and so what this renders:
 *   - With tools, a system turn "# Tools ..." listing each tool as
 *     `tool | tojson`, preceded by the first message's content when that
 *     message is a system message.  Without tools, a first system message
 *     becomes a plain system turn.  A system message anywhere else is
 *     rendered as its own turn, like a user message.
 *   - user: <|im_start|>user\nCONTENT<|im_end|>\n
 *   - assistant: the reasoning R is the `reasoning_content` field when
 *     present and not null (the content is then used as is); otherwise, when
 *     the content contains "</think>", R is the text before the first
 *     "</think>", after the last "<think>" in it if any, with newlines
 *     trimmed, and the content becomes what follows the last "</think>",
 *     leading newlines trimmed.  Only assistant turns after the last "real" user query (the
 *     last user message that is not wholly a <tool_response>…</tool_response>
 *     block) keep their reasoning, as "<think>\nR\n</think>\n\n" — the last
 *     message always, earlier ones only when R is not empty; every other
 *     turn drops it.  Tool calls follow, one
 *     "<tool_call>\n{\"name\": \"N\", \"arguments\": A}\n</tool_call>" each,
 *     separated by "\n" (and from non-empty content); A is `arguments`
 *     verbatim when it is a string, else its tojson.
 *   - tool: consecutive tool messages form one user turn, each content
 *     wrapped in "\n<tool_response>\n…\n</tool_response>".
 *   - add_generation_prompt appends "<|im_start|>assistant\n", and
 *     enable_thinking=false further "<think>\n\n</think>\n\n".
 *
 * `tojson` is transformers' filter: Python's json.dumps(x,
 * ensure_ascii=False) — ", " and ": " separators, keys in document order (a
 * duplicated key keeps its first position and last value, as Python's dict
 * does), non-ASCII written as is, only '"', '\\' and control characters
 * escaped, integers as written, floats as Python's repr (1.0, 1e-05,
 * 1e+16).  To know how a number was written, parse records with
 * qw_chat_json_parse: it keeps each number's literal.  Numbers in trees
 * built any other way print as integers when integral and below 1e16, as
 * Python floats otherwise.
 *
 * Images (Qwen3-VL).  The content of a user or system message may also be
 * a list of parts, as Hugging Face datasets write them: {"type": "text",
 * "text": STRING} and {"type": "image", "image": PATH} (the "type" may be
 * left out when the part has "text" or "image"; an image part of a
 * webdataset sample may leave out the path).  They render in order, text as
 * is and each image as QW_CHAT_IMAGE_TEXT, which is what Qwen3-VL's chat
 * template writes (its processor then repeats the pad token once per
 * merged patch of the image: the caller's business).  A message with list
 * content counts as a user query for the reasoning rule below.
 *
 * Stricter than the template, by design (each is QW_EXIT_DATA with a clear
 * message): an empty conversation; a message that is not an object; a
 * missing or non-string `role` or `content` (the template only handles
 * string content: a list or null either fails inside Jinja or, for tool
 * messages, silently renders as nothing or as Python's repr); a role other
 * than system/user/assistant/tool (the template would silently drop the
 * message); a non-string, non-null `reasoning_content`; `tools` or
 * `tool_calls` that are neither arrays nor null; a tool call without a
 * string `name` or without `arguments` (Jinja would print an empty name).
 */
#ifndef QW_CHAT_H
#define QW_CHAT_H

#include <stddef.h>

#include <cJSON.h>

#include "qw/buf.h"

/* The Jinja source of Qwen3's chat template, exactly as shipped in its
 * tokenizer_config.json (written into tokenizer_config.json by training). */
extern const char qw_chat_qwen3_template[];

typedef struct {
    int add_generation_prompt;  /* append the opening of an assistant turn */
    int thinking_off;           /* enable_thinking=false: with the generation
                                 * prompt, also an empty think block.  0 is
                                 * enable_thinking absent or true (the template
                                 * renders both the same way). */
    const char *where;          /* prefix of error messages, e.g.
                                 * "'chat.jsonl': line 12"; NULL for none */
} qw_chat_opts;

/* The bytes of one assistant turn that the model generates: from just
 * after "<|im_start|>assistant\n" up to and including "<|im_end|>" (not the
 * "\n" after it).  Offsets into qw_buf.p, half-open: [start, end). */
typedef struct {
    size_t start, end;
} qw_chat_span;

/* A growable list of spans; zero-initialised is empty; free with
 * qw_chat_spans_free. */
typedef struct {
    qw_chat_span *v;
    size_t n, cap;
} qw_chat_spans;

void qw_chat_spans_free(qw_chat_spans *s);

/* Render `messages` (a cJSON array of HF-format messages: role, content,
 * optional reasoning_content, optional tool_calls [{type, function: {name,
 * arguments}}] on assistant messages — a call without the "function"
 * wrapper, {name, arguments}, is accepted as the template does) with the
 * optional `tools` (a cJSON array of tool schemas, or NULL / JSON null; an
 * empty array is the same as none).  `opt` may be NULL (all defaults).
 *
 * The text is appended to *out.  When `spans` is not NULL, one span per
 * assistant message, in order, is appended to it (offsets count from
 * out->p, including what *out held before), for building SFT loss masks.
 *
 * Returns 0, or QW_EXIT_DATA with a message "WHERE: messages[I]: reason"
 * (I counts from 0), e.g. "'c.jsonl': line 4: messages[2]: unknown role
 * 'developer' (not system, user, assistant or tool)", or about the whole
 * ("WHERE: no messages", "WHERE: 'tools' is an object, not an array"); on
 * error neither *out nor *spans is changed.  The cJSON trees are only
 * read. */
int qw_chat_render(const cJSON *messages, const cJSON *tools, const qw_chat_opts *opt,
                   qw_buf *out, qw_chat_spans *spans);

/* One image in the rendered text. */
#define QW_CHAT_IMAGE_TEXT "<|vision_start|><|image_pad|><|vision_end|>"
enum { QW_CHAT_PART_TEXT, QW_CHAT_PART_IMAGE };
/* The kind of a content part (QW_CHAT_PART_*), or -1 when it is neither. */
int qw_chat_part(const cJSON *part);
/* An image part's path, or NULL when it has none. */
const char *qw_chat_part_image(const cJSON *part);
/* The image parts of `messages` in the order they render (message by
 * message, part by part): up to `max` of them into parts[], and their
 * number returned (messages as qw_chat_render accepts them). */
size_t qw_chat_images(const cJSON *messages, const cJSON **parts, size_t max);

/* Append transformers' `tojson` of v (see above) to *out. */
void qw_chat_tojson(const cJSON *v, qw_buf *out);
/* Append x as json.dumps writes a Python float (repr: 1.0, 0.30000000000000004,
 * 1e-05; Infinity, NaN). */
void qw_chat_float(double x, qw_buf *out);

/* Parse one JSON text of `len` bytes (e.g. a JSONL line without its
 * newline) with cJSON, and keep each number's literal text in its node's
 * `valuestring` (cJSON_Delete frees it; cJSON_Print ignores it), so that
 * qw_chat_tojson prints numbers as Python would after json.loads.
 * Refused, with QW_EXIT_DATA "WHERE: reason" (where may be NULL), as
 * Python's json.loads refuses them: text that is not one JSON value, a raw
 * control character inside a string, a number that is not strict JSON
 * ("01", "1."); and "\u0000" in a string, which a C string cannot hold.
 * Returns the tree (the caller frees it with cJSON_Delete) or NULL. */
cJSON *qw_chat_json_parse(const char *text, size_t len, const char *where);

#endif
