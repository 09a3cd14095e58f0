/* chat.c — Qwen3's chat template rendered in C, transformers' tojson, and a
 * JSON parser that keeps number literals (see qw/chat.h). */
#define _GNU_SOURCE     /* memmem */
#include "qw/chat.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"

/* ---- errors -------------------------------------------------------------- */

static int bad(const char *where, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const char *where, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qw_error(QW_EXIT_DATA, "%s%s%s", where ? where : "", where ? ": " : "", msg);
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    return "an object";
}

/* The member named `key`; of duplicates the last, as Python's json.loads. */
static const cJSON *field(const cJSON *obj, const char *key)
{
    const cJSON *found = NULL;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && !strcmp(c->string, key)) found = c;
    return found;
}

/* ---- tojson: Python's json.dumps(x, ensure_ascii=False) ----------------- */

static void put_string(qw_buf *out, const char *s)
{
    qw_buf_addc(out, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"': qw_buf_adds(out, "\\\""); break;
        case '\\': qw_buf_adds(out, "\\\\"); break;
        case '\b': qw_buf_adds(out, "\\b"); break;
        case '\f': qw_buf_adds(out, "\\f"); break;
        case '\n': qw_buf_adds(out, "\\n"); break;
        case '\r': qw_buf_adds(out, "\\r"); break;
        case '\t': qw_buf_adds(out, "\\t"); break;
        default:
            if (c < 0x20) {
                char e[8];
                snprintf(e, sizeof e, "\\u%04x", c);
                qw_buf_adds(out, e);
            } else {
                qw_buf_addc(out, (char)c);
            }
        }
    }
    qw_buf_addc(out, '"');
}

/* The shortest digits D (*nd of them; x = 0.D × 10^decpt) that read back as
 * x >= 0 and, of equally short ones, the nearest: what Python's repr
 * prints.  The nearest n-digit decimal (printf's) is the candidate; at a
 * power of two, where the doubles below are closer than those above, it
 * can miss while the next n-digit decimal up reads back. */
static void shortest_digits(double x, char *digits, int *nd, int *decpt)
{
    char e[40];
    for (int prec = 0;; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, x);
        *nd = 0;
        const char *p = e;
        for (; *p != 'e'; p++)
            if (*p != '.') digits[(*nd)++] = *p;
        *decpt = atoi(p + 1) + 1;
        if (strtod(e, NULL) == x) return;
        int i = *nd - 1;
        while (i >= 0 && digits[i] == '9') digits[i--] = '0';
        if (i < 0) digits[0] = '1', ++*decpt;
        else digits[i]++;
        snprintf(e, sizeof e, "%c.%.*se%d", digits[0], *nd - 1, digits + 1, *decpt - 1);
        if (strtod(e, NULL) == x) return;
    }
}

/* Python's repr of a float: shortest digits, in positional notation when
 * the decimal exponent is in [-4, 16), else as d.ddde±XX; json.dumps spells
 * the non-finite values Infinity and NaN. */
static void put_float(qw_buf *out, double x)
{
    if (isnan(x)) { qw_buf_adds(out, "NaN"); return; }
    if (isinf(x)) { qw_buf_adds(out, x < 0 ? "-Infinity" : "Infinity"); return; }
    if (signbit(x)) qw_buf_addc(out, '-');
    char digits[24], e[16];
    int nd, decpt;
    shortest_digits(fabs(x), digits, &nd, &decpt);
    if (decpt <= -4 || decpt > 16) {
        qw_buf_addc(out, digits[0]);
        if (nd > 1) {
            qw_buf_addc(out, '.');
            qw_buf_add(out, digits + 1, nd - 1);
        }
        snprintf(e, sizeof e, "e%c%02d", decpt - 1 < 0 ? '-' : '+', abs(decpt - 1));
        qw_buf_adds(out, e);
    } else if (decpt <= 0) {
        qw_buf_adds(out, "0.");
        for (int i = decpt; i < 0; i++) qw_buf_addc(out, '0');
        qw_buf_add(out, digits, nd);
    } else if (decpt >= nd) {
        qw_buf_add(out, digits, nd);
        for (int i = nd; i < decpt; i++) qw_buf_addc(out, '0');
        qw_buf_adds(out, ".0");
    } else {
        qw_buf_add(out, digits, decpt);
        qw_buf_addc(out, '.');
        qw_buf_add(out, digits + decpt, nd - decpt);
    }
}

void qw_chat_float(double x, qw_buf *out) { put_float(out, x); }

static void put_number(qw_buf *out, const cJSON *v)
{
    const char *lit = v->valuestring;      /* set by qw_chat_json_parse */
    if (lit && strpbrk(lit, ".eE")) {
        put_float(out, strtod(lit, NULL));
    } else if (lit) {
        qw_buf_adds(out, strcmp(lit, "-0") ? lit : "0");
    } else if (v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 1e16) {
        char e[24];
        snprintf(e, sizeof e, "%.0f", v->valuedouble == 0 ? 0.0 : v->valuedouble);
        qw_buf_adds(out, e);
    } else {
        put_float(out, v->valuedouble);
    }
}

void qw_chat_tojson(const cJSON *v, qw_buf *out)
{
    if (cJSON_IsNull(v)) qw_buf_adds(out, "null");
    else if (cJSON_IsFalse(v)) qw_buf_adds(out, "false");
    else if (cJSON_IsTrue(v)) qw_buf_adds(out, "true");
    else if (cJSON_IsNumber(v)) put_number(out, v);
    else if (cJSON_IsString(v)) put_string(out, v->valuestring);
    else if (cJSON_IsArray(v)) {
        qw_buf_addc(out, '[');
        for (const cJSON *c = v->child; c; c = c->next) {
            qw_chat_tojson(c, out);
            if (c->next) qw_buf_adds(out, ", ");
        }
        qw_buf_addc(out, ']');
    } else if (cJSON_IsObject(v)) {
        qw_buf_addc(out, '{');
        int first = 1;
        for (const cJSON *c = v->child; c; c = c->next) {
            if (cJSON_GetObjectItemCaseSensitive(v, c->string) != c)
                continue;       /* a duplicate: printed at the first one's place */
            if (!first) qw_buf_adds(out, ", ");
            first = 0;
            put_string(out, c->string);
            qw_buf_adds(out, ": ");
            qw_chat_tojson(field(v, c->string), out);
        }
        qw_buf_addc(out, '}');
    } else {
        qw_buf_adds(out, v->valuestring);  /* cJSON_Raw */
    }
}

/* ---- parsing with number literals kept ---------------------------------- */

typedef struct {
    const char *text, *p, *end, *where;
} scanner;

/* Is [s, s+n) a number by the JSON grammar: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)? */
static int strict_number(const char *s, size_t n)
{
    const char *p = s, *e = s + n;
#define DIGITS() do { const char *d_ = p; while (p < e && *p >= '0' && *p <= '9') p++; \
                      if (p == d_) return 0; } while (0)
    if (p < e && *p == '-') p++;
    if (p < e && *p == '0') p++;
    else DIGITS();
    if (p < e && *p == '.') { p++; DIGITS(); }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        DIGITS();
    }
#undef DIGITS
    return p == e;
}

/* Advance to the next number literal, checking the strings passed on the
 * way: sets [*lit, *lit + *n), or *lit = NULL at the end.  The text is
 * valid JSON (cJSON said so), so strings are closed before s->end. */
static int next_number(scanner *s, const char **lit, size_t *n)
{
    *lit = NULL;
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '"') {
            for (s->p++; *s->p != '"'; s->p++) {
                if ((unsigned char)*s->p < 0x20)
                    return bad(s->where, "control character in a string at byte %td", s->p - s->text);
                if (*s->p == '\\' && *++s->p == 'u' && !strncmp(s->p + 1, "0000", 4))
                    return bad(s->where, "'\\u0000' in a string at byte %td: not supported",
                               s->p - 1 - s->text);
            }
            s->p++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            *lit = s->p;
            while (s->p < s->end && *s->p && strchr("+-.eE0123456789", *s->p)) s->p++;
            *n = (size_t)(s->p - *lit);
            if (!strict_number(*lit, *n))
                return bad(s->where, "bad number '%.*s' at byte %td", (int)*n, *lit, *lit - s->text);
            return 0;
        } else {
            s->p++;
        }
    }
    return 0;
}

/* Give every number node under v, in document order, its literal. */
static int attach_literals(cJSON *v, scanner *s)
{
    if (cJSON_IsNumber(v)) {
        const char *lit;
        size_t n;
        int st = next_number(s, &lit, &n);
        if (st) return st;
        if (!lit) return bad(s->where, "bad JSON");
        v->valuestring = (char *)cJSON_malloc(n + 1);
        if (!v->valuestring) return qw_error(QW_EXIT_FAIL, "out of memory");
        memcpy(v->valuestring, lit, n);
        v->valuestring[n] = 0;
    }
    for (cJSON *c = v->child; c; c = c->next) {
        int st = attach_literals(c, s);
        if (st) return st;
    }
    return 0;
}

cJSON *qw_chat_json_parse(const char *text, size_t len, const char *where)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        bad(where, "bad JSON at byte %td", end ? end - text : (ptrdiff_t)0);
        return NULL;
    }
    int st = 0;
    for (const char *p = end; p < text + len && !st; p++)
        if (!*p || !strchr(" \t\r\n", *p)) st = bad(where, "text after the JSON value at byte %td", p - text);
    scanner s = {text, text, end, where};
    if (!st) st = attach_literals(root, &s);
    if (!st) {
        const char *lit;
        size_t n;
        st = next_number(&s, &lit, &n);      /* the strings after the last number */
    }
    if (st) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ---- the template -------------------------------------------------------- */

enum { SYSTEM, USER, ASSISTANT, TOOL };

typedef struct {
    const char *p;
    size_t n;
} span;

typedef struct {
    int role;
    const char *content;        /* "" when the content is a list of parts */
    const cJSON *parts;         /* user/system content parts (text, image), or NULL */
    const char *reasoning;      /* reasoning_content, or NULL when absent/null */
    const cJSON *calls;         /* tool_calls array, or NULL */
} msg;

static int starts(span s, const char *pre) { size_t k = strlen(pre); return s.n >= k && !memcmp(s.p, pre, k); }
static int ends(span s, const char *suf) { size_t k = strlen(suf); return s.n >= k && !memcmp(s.p + s.n - k, suf, k); }
static span lstrip_nl(span s) { while (s.n && *s.p == '\n') s.p++, s.n--; return s; }
static span rstrip_nl(span s) { while (s.n && s.p[s.n - 1] == '\n') s.n--; return s; }
static span whole(const char *s) { return (span){s, strlen(s)}; }
static void put(qw_buf *out, span s) { qw_buf_add(out, s.p, s.n); }

/* The function a tool call names: its "function" object when that is an
 * object with members (Jinja's truth test), else the call itself. */
static const cJSON *call_function(const cJSON *call)
{
    const cJSON *fn = field(call, "function");
    return cJSON_IsObject(fn) && fn->child ? fn : call;
}

static int check_calls(const cJSON *calls, size_t i, const char *where)
{
    size_t j = 0;
    for (const cJSON *c = calls->child; c; c = c->next, j++) {
        if (!cJSON_IsObject(c))
            return bad(where, "messages[%zu]: tool_calls[%zu] is %s, not an object", i, j, type_name(c));
        const cJSON *fn = field(c, "function");
        if (fn && !cJSON_IsObject(fn) && !cJSON_IsNull(fn))
            return bad(where, "messages[%zu]: tool_calls[%zu]: 'function' is %s, not an object", i, j,
                       type_name(fn));
        const cJSON *name = field(call_function(c), "name");
        if (!name) return bad(where, "messages[%zu]: tool_calls[%zu]: missing 'name'", i, j);
        if (!cJSON_IsString(name))
            return bad(where, "messages[%zu]: tool_calls[%zu]: 'name' is %s, not a string", i, j,
                       type_name(name));
        if (!field(call_function(c), "arguments"))
            return bad(where, "messages[%zu]: tool_calls[%zu]: missing 'arguments'", i, j);
    }
    return 0;
}

static int check_message(const cJSON *m, size_t i, const char *where, msg *out)
{
    static const char *const roles[] = {"system", "user", "assistant", "tool"};
    if (!cJSON_IsObject(m)) return bad(where, "messages[%zu] is %s, not an object", i, type_name(m));
    const cJSON *role = field(m, "role"), *content = field(m, "content");
    if (!role) return bad(where, "messages[%zu]: missing 'role'", i);
    if (!cJSON_IsString(role))
        return bad(where, "messages[%zu]: 'role' is %s, not a string", i, type_name(role));
    out->role = -1;
    for (int r = 0; r < 4; r++)
        if (!strcmp(role->valuestring, roles[r])) out->role = r;
    if (out->role < 0)
        return bad(where, "messages[%zu]: unknown role '%.64s' (not system, user, assistant or tool)", i,
                   role->valuestring);
    if (!content) return bad(where, "messages[%zu]: missing 'content'", i);
    out->parts = NULL;
    if (cJSON_IsArray(content) && (out->role == USER || out->role == SYSTEM)) {
        size_t j = 0;
        for (const cJSON *c = content->child; c; c = c->next, j++) {
            int kind = qw_chat_part(c);
            if (kind < 0)
                return bad(where, "messages[%zu]: content[%zu] is not a text part {\"type\": \"text\", \"text\": "
                           "STRING} or an image part {\"type\": \"image\", \"image\": PATH}", i, j);
        }
        out->content = "";
        out->parts = content;
        out->reasoning = NULL;
        out->calls = NULL;
        return 0;
    }
    if (!cJSON_IsString(content))
        return bad(where, "messages[%zu]: 'content' is %s, not a string (the Qwen3 template renders "
                   "only string content)", i, type_name(content));
    out->content = content->valuestring;
    out->reasoning = NULL;
    out->calls = NULL;
    if (out->role != ASSISTANT) return 0;
    const cJSON *rc = field(m, "reasoning_content"), *calls = field(m, "tool_calls");
    if (rc && !cJSON_IsNull(rc)) {
        if (!cJSON_IsString(rc))
            return bad(where, "messages[%zu]: 'reasoning_content' is %s, not a string", i, type_name(rc));
        out->reasoning = rc->valuestring;
    }
    if (calls && !cJSON_IsNull(calls)) {
        if (!cJSON_IsArray(calls))
            return bad(where, "messages[%zu]: 'tool_calls' is %s, not an array", i, type_name(calls));
        out->calls = calls->child ? calls : NULL;
    }
    return out->calls ? check_calls(out->calls, i, where) : 0;
}

int qw_chat_part(const cJSON *part)
{
    if (!cJSON_IsObject(part)) return -1;
    const cJSON *type = field(part, "type"), *text = field(part, "text"), *image = field(part, "image");
    if (type && !cJSON_IsString(type)) return -1;
    if (type ? !strcmp(type->valuestring, "image") : image != NULL)
        return cJSON_IsString(image) || (!image && type) ? QW_CHAT_PART_IMAGE : -1;
    if ((!type || !strcmp(type->valuestring, "text")) && cJSON_IsString(text)) return QW_CHAT_PART_TEXT;
    return -1;
}

const char *qw_chat_part_image(const cJSON *part)
{
    const cJSON *image = field(part, "image");
    return cJSON_IsString(image) ? image->valuestring : NULL;
}

size_t qw_chat_images(const cJSON *messages, const cJSON **parts, size_t max)
{
    size_t n = 0;
    for (const cJSON *m = cJSON_IsArray(messages) ? messages->child : NULL; m; m = m->next) {
        const cJSON *content = cJSON_IsObject(m) ? field(m, "content") : NULL;
        if (!cJSON_IsArray(content)) continue;
        for (const cJSON *c = content->child; c; c = c->next)
            if (qw_chat_part(c) == QW_CHAT_PART_IMAGE) {
                if (n < max) parts[n] = c;
                n++;
            }
    }
    return n;
}

/* A message's content: its string, or its parts in order (text as is, an
 * image as Qwen3-VL's template writes it). */
static void put_content(qw_buf *out, const msg *m)
{
    if (!m->parts) {
        qw_buf_adds(out, m->content);
        return;
    }
    for (const cJSON *c = m->parts->child; c; c = c->next) {
        if (qw_chat_part(c) == QW_CHAT_PART_IMAGE) qw_buf_adds(out, QW_CHAT_IMAGE_TEXT);
        else qw_buf_adds(out, field(c, "text")->valuestring);
    }
}

static void render_assistant(const msg *m, int keep_reasoning_turn, int last, qw_buf *out,
                             qw_chat_spans *spans)
{
    span content = whole(m->content), reasoning = {"", 0};
    if (m->reasoning) {
        reasoning = whole(m->reasoning);
    } else if (strstr(m->content, "</think>")) {
        const char *first = strstr(m->content, "</think>"), *lastc = first, *q;
        while ((q = strstr(lastc + 1, "</think>"))) lastc = q;
        content = lstrip_nl(whole(lastc + strlen("</think>")));
        reasoning = rstrip_nl((span){m->content, (size_t)(first - m->content)});
        while ((q = memmem(reasoning.p, reasoning.n, "<think>", 7)))   /* after the last <think> */
            reasoning.n -= (size_t)(q + 7 - reasoning.p), reasoning.p = q + 7;
        reasoning = lstrip_nl(reasoning);
    }
    qw_buf_adds(out, "<|im_start|>assistant\n");
    size_t start = out->n;
    if (keep_reasoning_turn && (last || reasoning.n)) {
        qw_buf_adds(out, "<think>\n");
        put(out, lstrip_nl(rstrip_nl(reasoning)));
        qw_buf_adds(out, "\n</think>\n\n");
        put(out, lstrip_nl(content));
    } else {
        put(out, content);
    }
    size_t j = 0;
    for (const cJSON *c = m->calls ? m->calls->child : NULL; c; c = c->next, j++) {
        if (j > 0 || content.n) qw_buf_addc(out, '\n');
        const cJSON *fn = call_function(c), *args = field(fn, "arguments");
        qw_buf_adds(out, "<tool_call>\n{\"name\": \"");
        qw_buf_adds(out, field(fn, "name")->valuestring);
        qw_buf_adds(out, "\", \"arguments\": ");
        if (cJSON_IsString(args)) qw_buf_adds(out, args->valuestring);
        else qw_chat_tojson(args, out);
        qw_buf_adds(out, "}\n</tool_call>");
    }
    qw_buf_adds(out, "<|im_end|>");
    if (spans) {
        if (spans->n == spans->cap) {
            spans->cap = spans->cap ? 2 * spans->cap : 8;
            spans->v = (qw_chat_span *)qw_realloc(spans->v, spans->cap * sizeof *spans->v);
        }
        spans->v[spans->n++] = (qw_chat_span){start, out->n};
    }
    qw_buf_addc(out, '\n');
}

static void render_tools(const msg *first, const cJSON *tools, qw_buf *out)
{
    qw_buf_adds(out, "<|im_start|>system\n");
    if (first->role == SYSTEM) {
        put_content(out, first);
        qw_buf_adds(out, "\n\n");
    }
    qw_buf_adds(out, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                     "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
    for (const cJSON *t = tools->child; t; t = t->next) {
        qw_buf_addc(out, '\n');
        qw_chat_tojson(t, out);
    }
    qw_buf_adds(out, "\n</tools>\n\nFor each function call, return a json object with function name and "
                     "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                     "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
}

int qw_chat_render(const cJSON *messages, const cJSON *tools, const qw_chat_opts *opt, qw_buf *out,
                   qw_chat_spans *spans)
{
    static const qw_chat_opts defaults;
    if (!opt) opt = &defaults;
    if (!messages) return bad(opt->where, "missing 'messages'");
    if (!cJSON_IsArray(messages)) return bad(opt->where, "'messages' is %s, not an array", type_name(messages));
    if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools))
        return bad(opt->where, "'tools' is %s, not an array", type_name(tools));
    size_t n = (size_t)cJSON_GetArraySize(messages), i = 0;
    if (!n) return bad(opt->where, "no messages");
    msg *m = (msg *)qw_malloc(n * sizeof *m);
    for (const cJSON *c = messages->child; c; c = c->next, i++) {
        int st = check_message(c, i, opt->where, &m[i]);
        if (st) {
            free(m);
            return st;
        }
    }

    size_t last_query = n - 1;
    for (i = n; i-- > 0;) {
        span s = whole(m[i].content);
        if (m[i].role == USER && (m[i].parts || !(starts(s, "<tool_response>") && ends(s, "</tool_response>")))) {
            last_query = i;
            break;
        }
    }
    if (cJSON_IsArray(tools) && tools->child) {
        render_tools(&m[0], tools, out);
    } else if (m[0].role == SYSTEM) {
        qw_buf_adds(out, "<|im_start|>system\n");
        put_content(out, &m[0]);
        qw_buf_adds(out, "<|im_end|>\n");
    }
    for (i = 0; i < n; i++) {
        if (m[i].role == USER || (m[i].role == SYSTEM && i > 0)) {
            qw_buf_adds(out, m[i].role == USER ? "<|im_start|>user\n" : "<|im_start|>system\n");
            put_content(out, &m[i]);
            qw_buf_adds(out, "<|im_end|>\n");
        } else if (m[i].role == ASSISTANT) {
            render_assistant(&m[i], i > last_query, i == n - 1, out, spans);
        } else if (m[i].role == TOOL) {
            if (i == 0 || m[i - 1].role != TOOL) qw_buf_adds(out, "<|im_start|>user");
            qw_buf_adds(out, "\n<tool_response>\n");
            qw_buf_adds(out, m[i].content);
            qw_buf_adds(out, "\n</tool_response>");
            if (i == n - 1 || m[i + 1].role != TOOL) qw_buf_adds(out, "<|im_end|>\n");
        }
    }
    if (opt->add_generation_prompt) {
        qw_buf_adds(out, "<|im_start|>assistant\n");
        if (opt->thinking_off) qw_buf_adds(out, "<think>\n\n</think>\n\n");
    }
    free(m);
    return 0;
}

void qw_chat_spans_free(qw_chat_spans *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}
