/* metrics.c — JSONL metrics and TensorBoard event files (TFRecord framing,
 * hand-encoded tensorflow.Event protobufs). */
#include "qw/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include <cJSON.h>
#include <unistd.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/hash.h"

struct qw_metrics {
    FILE *jsonl;
    char *jsonl_path;
    FILE *tb;
    char *tb_path;
};

static int key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 63 || !strcmp(k, "step")) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(k[i] >= 'a' && k[i] <= 'z') && !(k[i] >= 'A' && k[i] <= 'Z') && !(k[i] >= '0' && k[i] <= '9') &&
            !strchr("_./-", k[i]))
            return 0;
    return 1;
}

/* ---- protobuf and TFRecord encoding ---- */

static void put_varint(qw_buf *b, uint64_t v)
{
    while (v >= 0x80) { qw_buf_addc(b, (char)(v | 0x80)); v >>= 7; }
    qw_buf_addc(b, (char)v);
}

static void put_le(qw_buf *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) qw_buf_addc(b, (char)(v >> (8 * i)));
}

static void put_bytes_field(qw_buf *b, int field, const void *p, size_t n)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    qw_buf_add(b, p, n);
}

/* Event header: wall_time (1, fixed64 double) and step (2, varint). */
static void put_event_head(qw_buf *b, long step)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    double wall = (double)tv.tv_sec + tv.tv_usec * 1e-6;
    uint64_t bits;
    memcpy(&bits, &wall, 8);
    put_varint(b, 1 << 3 | 1);
    put_le(b, bits, 8);
    put_varint(b, 2 << 3 | 0);
    put_varint(b, (uint64_t)(int64_t)step);
}

static uint32_t masked_crc(const void *p, size_t n)
{
    uint32_t c = qw_crc32c(0, p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static int tb_record(qw_metrics *m, const qw_buf *ev)
{
    qw_buf r = {0};
    put_le(&r, ev->n, 8);
    put_le(&r, masked_crc(r.p, 8), 4);
    qw_buf_add(&r, ev->p, ev->n);
    put_le(&r, masked_crc(ev->p, ev->n), 4);
    int bad = fwrite(r.p, 1, r.n, m->tb) != r.n || fflush(m->tb) != 0;
    qw_buf_free(&r);
    return bad ? qw_error(QW_EXIT_FAIL, "'%s': %s", m->tb_path, strerror(errno)) : 0;
}

static int tb_open(qw_metrics *m, const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return qw_error(QW_EXIT_FAIL, "'%s': %s", dir, strerror(errno));
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    qw_buf path = {0};
    char num[64];
    qw_buf_adds(&path, dir);
    snprintf(num, sizeof num, "/events.out.tfevents.%010ld.", (long)time(NULL));
    qw_buf_adds(&path, num);
    qw_buf_adds(&path, host);
    int fd = open(qw_buf_cstr(&path), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) {
        snprintf(num, sizeof num, ".%ld", (long)getpid());
        qw_buf_adds(&path, num);
        fd = open(qw_buf_cstr(&path), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    m->tb_path = qw_strdup(qw_buf_cstr(&path));
    qw_buf_free(&path);
    if (fd < 0 || !(m->tb = fdopen(fd, "wb"))) {
        if (fd >= 0) close(fd);
        return qw_error(QW_EXIT_FAIL, "'%s': %s", m->tb_path, strerror(errno));
    }
    qw_buf ev = {0};
    put_event_head(&ev, 0);
    put_bytes_field(&ev, 3, "brain.Event:2", 13);
    int st = tb_record(m, &ev);
    qw_buf_free(&ev);
    return st;
}

static int tb_write(qw_metrics *m, long step, const qw_metric *v, int n)
{
    qw_buf sum = {0}, val = {0}, ev = {0};
    for (int i = 0; i < n; i++) {
        val.n = 0;
        put_bytes_field(&val, 1, v[i].key, strlen(v[i].key));
        float f = (float)v[i].value;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        put_varint(&val, 2 << 3 | 5);
        put_le(&val, bits, 4);
        put_bytes_field(&sum, 1, val.p, val.n);
    }
    put_event_head(&ev, step);
    put_bytes_field(&ev, 5, sum.p, sum.n);
    int st = tb_record(m, &ev);
    qw_buf_free(&sum);
    qw_buf_free(&val);
    qw_buf_free(&ev);
    return st;
}

/* ---- JSONL ---- */

static void put_number(qw_buf *b, double x)
{
    char s[40];
    if (!isfinite(x)) snprintf(s, sizeof s, "null");
    else if (x == floor(x) && fabs(x) < 9007199254740992.0) snprintf(s, sizeof s, "%.0f", x);
    else snprintf(s, sizeof s, "%.9g", x);
    qw_buf_adds(b, s);
}

static int jsonl_write(qw_metrics *m, long step, const qw_metric *v, int n)
{
    qw_buf b = {0};
    char s[40];
    snprintf(s, sizeof s, "{\"step\":%ld", step);
    qw_buf_adds(&b, s);
    for (int i = 0; i < n; i++) {
        qw_buf_adds(&b, ",\"");
        qw_buf_adds(&b, v[i].key);
        qw_buf_adds(&b, "\":");
        put_number(&b, v[i].value);
    }
    qw_buf_adds(&b, "}\n");
    int bad = fwrite(b.p, 1, b.n, m->jsonl) != b.n || fflush(m->jsonl) != 0;
    qw_buf_free(&b);
    return bad ? qw_error(QW_EXIT_FAIL, "'%s': %s", m->jsonl_path, strerror(errno)) : 0;
}

/* ---- public ---- */

int qw_metrics_open(qw_metrics **out, const char *jsonl, const char *tbdir)
{
    qw_metrics *m = qw_calloc(1, sizeof *m);
    *out = NULL;
    if (jsonl) {
        m->jsonl_path = qw_strdup(jsonl);
        m->jsonl = strcmp(jsonl, "-") ? fopen(jsonl, "a") : stdout;
        if (!m->jsonl) {
            int st = qw_error(QW_EXIT_FAIL, "'%s': %s", jsonl, strerror(errno));
            qw_metrics_close(m);
            return st;
        }
    }
    if (tbdir) {
        int st = tb_open(m, tbdir);
        if (st) {
            char *msg = qw_strdup(qw_error_msg());
            qw_metrics_close(m);
            qw_error(st, "%s", msg);
            free(msg);
            return st;
        }
    }
    *out = m;
    return 0;
}

int qw_metrics_write(qw_metrics *m, long step, const qw_metric *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!key_ok(v[i].key)) return qw_error(QW_EXIT_USAGE, "'%s': bad metric name", v[i].key);
    int st = 0;
    if (m->jsonl) st = jsonl_write(m, step, v, n);
    if (!st && m->tb) st = tb_write(m, step, v, n);
    return st;
}

const char *qw_metrics_tb_path(const qw_metrics *m) { return m->tb ? m->tb_path : NULL; }

int qw_metrics_close(qw_metrics *m)
{
    if (!m) return 0;
    int st = 0;
    if (m->jsonl && m->jsonl != stdout && fclose(m->jsonl) != 0)
        st = qw_error(QW_EXIT_FAIL, "'%s': %s", m->jsonl_path, strerror(errno));
    if (m->tb && fclose(m->tb) != 0 && !st)
        st = qw_error(QW_EXIT_FAIL, "'%s': %s", m->tb_path, strerror(errno));
    free(m->jsonl_path);
    free(m->tb_path);
    free(m);
    return st;
}

int qw_metrics_truncate(const char *jsonl, long max_step)
{
    FILE *in = fopen(jsonl, "r");
    if (!in) return errno == ENOENT ? 0 : qw_error(QW_EXIT_FAIL, "'%s': %s", jsonl, strerror(errno));
    qw_afile out;
    int rc = qw_afile_open(jsonl, &out);
    if (rc) {
        fclose(in);
        return rc;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    while (!rc && (n = getline(&line, &cap, in)) > 0) {
        lineno++;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)n);
        const cJSON *step = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
        if (!cJSON_IsNumber(step))
            rc = qw_error(QW_EXIT_DATA, "'%s': line %ld: not a metrics record with a step", jsonl, lineno);
        else if (step->valuedouble <= max_step && fwrite(line, 1, (size_t)n, out.f) != (size_t)n)
            rc = qw_error(QW_EXIT_FAIL, "'%s': %s", out.tmp, strerror(errno));
        cJSON_Delete(j);
    }
    free(line);
    fclose(in);
    if (rc) qw_afile_abort(&out);
    else rc = qw_afile_commit(&out);
    return rc;
}

/* ---- reading a log back ---- */

int qw_metrics_log_key(const qw_metrics_log *log, const char *key)
{
    for (int k = 0; k < log->nkeys; k++)
        if (!strcmp(log->keys[k], key)) return k;
    return -1;
}

void qw_metrics_log_free(qw_metrics_log *log)
{
    for (int k = 0; k < log->nkeys; k++) free(log->keys[k]);
    free(log->keys), free(log->step), free(log->val);
    memset(log, 0, sizeof *log);
}

/* Add a column for `key`, NAN in every record; room for `cap` records kept. */
static void widen(qw_metrics_log *a, const char *key, size_t cap)
{
    int K = a->nkeys + 1;
    size_t rows = cap > (size_t)a->nrec ? cap : (size_t)a->nrec;
    double *val = qw_malloc((rows ? rows : 1) * K * sizeof *val);
    for (int r = 0; r < a->nrec; r++) {
        memcpy(val + (size_t)r * K, a->val + (size_t)r * (K - 1), (size_t)(K - 1) * sizeof *val);
        val[(size_t)r * K + K - 1] = NAN;
    }
    free(a->val);
    a->val = val;
    a->keys = qw_realloc(a->keys, K * sizeof *a->keys);
    a->keys[K - 1] = qw_strdup(key);
    a->nkeys = K;
}

void qw_metrics_log_append(qw_metrics_log *a, const qw_metrics_log *b, double step_offset)
{
    for (int k = 0; k < b->nkeys; k++)
        if (qw_metrics_log_key(a, b->keys[k]) < 0) widen(a, b->keys[k], 0);
    a->step = qw_realloc(a->step, ((size_t)a->nrec + b->nrec + 1) * sizeof *a->step);
    a->val = qw_realloc(a->val, ((size_t)a->nrec + b->nrec + 1) * (a->nkeys ? a->nkeys : 1) * sizeof *a->val);
    for (int i = 0; i < b->nrec; i++) {
        double *row = a->val + (size_t)(a->nrec + i) * a->nkeys;
        for (int k = 0; k < a->nkeys; k++) {
            int c = qw_metrics_log_key(b, a->keys[k]);
            row[k] = c < 0 ? NAN : b->val[(size_t)i * b->nkeys + c];
        }
        a->step[a->nrec + i] = step_offset + b->step[i];
    }
    a->nrec += b->nrec;
}

int qw_metrics_read(const char *jsonl, qw_metrics_log *out)
{
    memset(out, 0, sizeof *out);
    FILE *in = fopen(jsonl, "r");
    if (!in) return qw_error(QW_EXIT_FAIL, "'%s': %s", jsonl, strerror(errno));
    char *line = NULL;
    size_t cap = 0, rcap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, in)) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)n) continue;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)n);
        const cJSON *step = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
        if (!cJSON_IsObject(j) || !cJSON_IsNumber(step)) {
            rc = qw_error(QW_EXIT_DATA, "'%s': line %ld: %s", jsonl, lineno,
                          !j ? "not JSON" : !cJSON_IsObject(j) ? "not a JSON object" : "no numeric \"step\"");
            cJSON_Delete(j);
            break;
        }
        /* new keys widen the table */
        for (const cJSON *v = j->child; v; v = v->next)
            if ((cJSON_IsNumber(v) || cJSON_IsNull(v)) && strcmp(v->string, "step") && qw_metrics_log_key(out, v->string) < 0)
                widen(out, v->string, rcap);
        if ((size_t)out->nrec == rcap) {
            rcap = rcap ? 2 * rcap : 64;
            out->step = qw_realloc(out->step, rcap * sizeof *out->step);
            out->val = qw_realloc(out->val, rcap * (size_t)(out->nkeys ? out->nkeys : 1) * sizeof *out->val);
        }
        double *row = out->val + (size_t)out->nrec * out->nkeys;
        for (int k = 0; k < out->nkeys; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, out->keys[k]);
            row[k] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        }
        out->step[out->nrec++] = step->valuedouble;
        cJSON_Delete(j);
    }
    free(line);
    fclose(in);
    if (rc) qw_metrics_log_free(out);
    return rc;
}
