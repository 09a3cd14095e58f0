/* ckpt.c — checkpoint directories: atomic save, resolve, resume. */
#define _GNU_SOURCE
#include "qw/ckpt.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/st.h"

const char *const qw_ckpt_tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", NULL,
};

void qw_train_state_free(qw_train_state *s)
{
    cJSON_Delete(s->data);
    cJSON_Delete(s->rng);
    cJSON_Delete(s->run);
    memset(s, 0, sizeof *s);
}

/* ---- files ---- */

static int io_fail(const char *path) { return qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(errno)); }

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static int rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return errno == ENOENT ? 0 : io_fail(path);
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0 ? io_fail(path) : 0;
}

/* ---- state.json ---- */

static char *state_json(const qw_train_state *s)
{
    cJSON *j = cJSON_CreateObject(), *o = cJSON_CreateObject(), *sc = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "qw-trainer-state");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddNumberToObject(j, "step", (double)s->step);
    cJSON_AddNumberToObject(j, "tokens", (double)s->tokens);
    cJSON_AddStringToObject(o, "name", "adamw");
    cJSON_AddNumberToObject(o, "beta1", s->adamw.beta1);
    cJSON_AddNumberToObject(o, "beta2", s->adamw.beta2);
    cJSON_AddNumberToObject(o, "eps", s->adamw.eps);
    cJSON_AddNumberToObject(o, "weight_decay", s->adamw.weight_decay);
    cJSON_AddItemToObject(j, "optimizer", o);
    cJSON_AddStringToObject(sc, "kind", qw_sched_kind_name(s->sched.kind));
    cJSON_AddNumberToObject(sc, "lr", s->sched.lr);
    cJSON_AddNumberToObject(sc, "min_lr_ratio", s->sched.min_lr_ratio);
    cJSON_AddNumberToObject(sc, "warmup", (double)s->sched.warmup);
    cJSON_AddNumberToObject(sc, "total", (double)s->sched.total);
    cJSON_AddNumberToObject(sc, "decay_frac", s->sched.decay_frac);
    cJSON_AddStringToObject(sc, "decay_shape", qw_decay_shape_name(s->sched.decay_shape));
    cJSON_AddItemToObject(j, "schedule", sc);
    cJSON_AddItemToObject(j, "data", s->data ? cJSON_Duplicate(s->data, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "rng", s->rng ? cJSON_Duplicate(s->rng, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "run", s->run ? cJSON_Duplicate(s->run, 1) : cJSON_CreateNull());
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}

/* A number member of obj, or QW_EXIT_DATA naming it. */
static int get_num(const cJSON *obj, const char *key, const char *path, double *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(x)) return qw_error(QW_EXIT_DATA, "'%s': '%s': missing or not a number", path, key);
    *v = x->valuedouble;
    return 0;
}

/* A count member of obj: an integer in [0, 2^53) (a JSON number holds it
 * exactly, and it fits a long), or QW_EXIT_DATA naming it. */
static int get_count(const cJSON *obj, const char *key, const char *path, long *v)
{
    double d = 0;
    int st = get_num(obj, key, path, &d);
    if (st) return st;
    if (!(d >= 0 && d < 9007199254740992.0) || d != floor(d))
        return qw_error(QW_EXIT_DATA, "'%s': '%s': %g is not a count (an integer from 0)", path, key, d);
    *v = (long)d;
    return 0;
}

static int get_str(const cJSON *obj, const char *key, const char *path, const char **v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(x)) return qw_error(QW_EXIT_DATA, "'%s': '%s': missing or not a string", path, key);
    *v = x->valuestring;
    return 0;
}

static int parse_state(const char *text, const char *path, qw_train_state *s)
{
    cJSON *j = cJSON_Parse(text);
    if (!cJSON_IsObject(j)) { cJSON_Delete(j); return qw_error(QW_EXIT_DATA, "'%s': not a JSON object", path); }
    const char *fmt = "", *kind = "", *shape = "";
    double version = 0;
    long step = 0, tokens = 0;
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "optimizer");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "schedule");
    int st = get_str(j, "format", path, &fmt);
    if (!st && strcmp(fmt, "qw-trainer-state")) st = qw_error(QW_EXIT_DATA, "'%s': format '%s' is not qw-trainer-state", path, fmt);
    if (!st) st = get_num(j, "version", path, &version);
    if (!st && version != 1) st = qw_error(QW_EXIT_DATA, "'%s': version %g is not 1", path, version);
    if (!st && !cJSON_IsObject(o)) st = qw_error(QW_EXIT_DATA, "'%s': 'optimizer': missing or not an object", path);
    if (!st && !cJSON_IsObject(sc)) st = qw_error(QW_EXIT_DATA, "'%s': 'schedule': missing or not an object", path);
    if (!st) st = get_count(j, "step", path, &step);
    if (!st) st = get_count(j, "tokens", path, &tokens);
    if (!st) st = get_num(o, "beta1", path, &s->adamw.beta1);
    if (!st) st = get_num(o, "beta2", path, &s->adamw.beta2);
    if (!st) st = get_num(o, "eps", path, &s->adamw.eps);
    if (!st) st = get_num(o, "weight_decay", path, &s->adamw.weight_decay);
    if (!st) st = get_num(sc, "lr", path, &s->sched.lr);
    if (!st) st = get_num(sc, "min_lr_ratio", path, &s->sched.min_lr_ratio);
    if (!st) st = get_count(sc, "warmup", path, &s->sched.warmup);
    if (!st) st = get_count(sc, "total", path, &s->sched.total);
    if (!st) st = get_num(sc, "decay_frac", path, &s->sched.decay_frac);
    if (!st) st = get_str(sc, "kind", path, &kind);
    if (!st && qw_sched_kind_parse(kind, &s->sched.kind)) st = qw_error(QW_EXIT_DATA, "'%s': 'kind': unknown schedule '%s'", path, kind);
    if (!st) st = get_str(sc, "decay_shape", path, &shape);
    if (!st && qw_decay_shape_parse(shape, &s->sched.decay_shape))
        st = qw_error(QW_EXIT_DATA, "'%s': 'decay_shape': unknown shape '%s'", path, shape);
    if (!st) {
        s->step = step;
        s->tokens = tokens;
        s->data = cJSON_DetachItemFromObjectCaseSensitive(j, "data");
        s->rng = cJSON_DetachItemFromObjectCaseSensitive(j, "rng");
        s->run = cJSON_DetachItemFromObjectCaseSensitive(j, "run");
    }
    cJSON_Delete(j);
    return st;
}

/* ---- RNG state ---- */

static cJSON *hex(uint64_t v, int digits)
{
    char s[24];
    snprintf(s, sizeof s, "%0*llx", digits, (unsigned long long)v);
    return cJSON_CreateString(s);
}

cJSON *qw_ckpt_rng_json(const qw_rng *r)
{
    cJSON *j = cJSON_CreateObject(), *b = cJSON_CreateArray();
    uint64_t spare;
    memcpy(&spare, &r->spare, 8);
    cJSON_AddItemToObject(j, "seed", hex(r->seed, 16));
    cJSON_AddItemToObject(j, "stream", hex(r->stream, 16));
    cJSON_AddItemToObject(j, "counter", hex(r->counter, 16));
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(b, hex(r->buf[i], 8));
    cJSON_AddItemToObject(j, "buf", b);
    cJSON_AddNumberToObject(j, "used", r->used);
    cJSON_AddNumberToObject(j, "has_spare", r->has_spare);
    cJSON_AddItemToObject(j, "spare", hex(spare, 16));
    return j;
}

/* A string of 1 to `digits` hex digits. */
static int unhex(const cJSON *x, int digits, uint64_t *v)
{
    if (!cJSON_IsString(x)) return -1;
    const char *s = x->valuestring;
    size_t n = strlen(s);
    if (n == 0 || n > (size_t)digits || strspn(s, "0123456789abcdefABCDEF") != n) return -1;
    *v = strtoull(s, NULL, 16);
    return 0;
}

int qw_ckpt_rng_parse(const cJSON *j, const char *where, qw_rng *r)
{
    uint64_t w[8] = {0};
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "buf");
    const cJSON *used = cJSON_GetObjectItemCaseSensitive(j, "used");
    const cJSON *spare = cJSON_GetObjectItemCaseSensitive(j, "has_spare");
    int ok = cJSON_IsObject(j) && !unhex(cJSON_GetObjectItemCaseSensitive(j, "seed"), 16, &w[0]) &&
             !unhex(cJSON_GetObjectItemCaseSensitive(j, "stream"), 16, &w[1]) &&
             !unhex(cJSON_GetObjectItemCaseSensitive(j, "counter"), 16, &w[2]) &&
             !unhex(cJSON_GetObjectItemCaseSensitive(j, "spare"), 16, &w[3]) &&
             cJSON_IsArray(b) && cJSON_GetArraySize(b) == 4 &&
             cJSON_IsNumber(used) && used->valuedouble >= 0 && used->valuedouble <= 4 &&
             used->valuedouble == (int)used->valuedouble &&
             cJSON_IsNumber(spare) && (spare->valuedouble == 0 || spare->valuedouble == 1);
    for (int i = 0; ok && i < 4; i++) ok = !unhex(cJSON_GetArrayItem(b, i), 8, &w[4 + i]);
    if (!ok) return qw_error(QW_EXIT_DATA, "'%s': not a random-number generator state", where);
    memset(r, 0, sizeof *r);
    r->seed = w[0];
    r->stream = w[1];
    r->counter = w[2];
    memcpy(&r->spare, &w[3], 8);
    for (int i = 0; i < 4; i++) r->buf[i] = (uint32_t)w[4 + i];
    r->used = used->valueint;
    r->has_spare = spare->valueint;
    return 0;
}

/* ---- save ---- */

static int write_moments(const char *path, const qw_params *P, const qw_params *M, const qw_params *V)
{
    qw_st_writer *w = qw_st_writer_new();
    qw_buf name = {0};
    float *owned[2];   /* host copies of device arenas */
    for (int pass = 0; pass < 2; pass++) {
        const float *x = qw_params_host(pass ? V : M, &owned[pass]);
        for (int i = 0; i < P->n; i++) {
            name.n = 0;
            qw_buf_adds(&name, pass ? "exp_avg_sq." : "exp_avg.");
            qw_buf_adds(&name, P->p[i].name);
            qw_st_writer_add(w, qw_buf_cstr(&name), QW_DT_F32, P->p[i].ndim, P->p[i].shape, x + P->p[i].offset);
        }
    }
    qw_buf_free(&name);
    int st = qw_st_writer_write(w, path);
    qw_st_writer_free(w);
    free(owned[0]);
    free(owned[1]);
    return st;
}

static int copy_tokenizer(const char *from, const char *to)
{
    int st = 0;
    for (int i = 0; qw_ckpt_tokenizer_files[i] && !st; i++) {
        char *src = qw_path_join(from, qw_ckpt_tokenizer_files[i]);
        qw_buf b = {0};
        int found;
        st = qw_read_file(src, &b, &found);
        if (!st && found) {
            char *dst = qw_path_join(to, qw_ckpt_tokenizer_files[i]);
            st = qw_write_file_atomic(dst, b.p, b.n);
            free(dst);
        }
        qw_buf_free(&b);
        free(src);
    }
    return st;
}

/* Fill tmp with the whole checkpoint. */
static int write_all(const char *tmp, const qw_ckpt_opts *o, const qw_params *P, const qw_params *M,
                     const qw_params *V, const qw_train_state *s)
{
    char *ts = qw_path_join(tmp, "trainer_state"), *opt = qw_path_join(ts, "optimizer.safetensors"), *sj = qw_path_join(ts, "state.json");
    char *text = NULL;
    int st = mkdir(tmp, 0777) != 0 ? io_fail(tmp) : 0;
    if (!st) st = qw_params_save(P, tmp, QW_DT_F32);
    if (!st && o->tokenizer_dir) st = copy_tokenizer(o->tokenizer_dir, tmp);
    if (!st && mkdir(ts, 0777) != 0) st = io_fail(ts);
    if (!st) st = write_moments(opt, P, M, V);
    if (!st) {
        text = state_json(s);
        st = qw_write_file_atomic(sj, text, strlen(text));
    }
    if (!st) st = qw_fsync_dir(ts);
    if (!st) st = qw_fsync_dir(tmp);
    cJSON_free(text);
    free(ts);
    free(opt);
    free(sj);
    return st;
}

int (*qw_ckpt_install_hook)(const char *stage);

/* OUT/.step-NNNNNN.old: where the rename fallback puts a checkpoint aside. */
static char *aside_of(const char *out, const char *name)
{
    qw_buf b = {0};
    qw_buf_adds(&b, out);
    qw_buf_adds(&b, "/.");
    qw_buf_adds(&b, name);
    qw_buf_adds(&b, ".old");
    return (char *)qw_buf_cstr(&b);
}

static int hook(const char *stage) { return qw_ckpt_install_hook ? qw_ckpt_install_hook(stage) : 0; }

/* Move tmp to OUT/name; an existing one is replaced (see "Replacing" in
 * qw/ckpt.h): swapped out atomically with RENAME_EXCHANGE where the file
 * system can, else put aside, the new one renamed in, the old one deleted. */
static int install(const char *out, const char *tmp, const char *name)
{
    char *dst = qw_path_join(out, name), *aside = NULL;
    int st = 0;
    if (rename(tmp, dst) == 0) goto done;
    if (errno != ENOTEMPTY && errno != EEXIST) { st = io_fail(dst); goto done; }
    const char *force = getenv("QW_CKPT_RENAME_FALLBACK");
    if (!(force && *force && strcmp(force, "0"))) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_EXCHANGE) == 0) { st = rm_rf(tmp); goto done; }
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) { st = io_fail(dst); goto done; }
    }
    aside = aside_of(out, name);
    if ((st = rm_rf(aside))) goto done;
    if (rename(dst, aside) != 0) { st = io_fail(dst); goto done; }
    if ((st = qw_fsync_dir(out)) || (st = hook("aside"))) goto done;
    if (rename(tmp, dst) != 0) {
        st = io_fail(dst);
        rename(aside, dst);   /* put the old one back */
        goto done;
    }
    if ((st = qw_fsync_dir(out)) || (st = hook("installed"))) goto done;
    st = rm_rf(aside);
done:
    free(dst);
    free(aside);
    return st;
}

/* A save interrupted between putting OUT/name aside and renaming the new
 * one in left only OUT/.name.old: move it back. */
static int recover_aside(const char *out, const char *name)
{
    char *dst = qw_path_join(out, name), *aside = aside_of(out, name);
    struct stat sb;
    int st = 0;
    if (lstat(dst, &sb) != 0 && errno == ENOENT && lstat(aside, &sb) == 0) {
        if (rename(aside, dst) != 0) st = io_fail(dst);
        else st = qw_fsync_dir(out);
    }
    free(dst);
    free(aside);
    return st;
}

/* step-<digits>: the step number, or -1. */
static long step_of(const char *name)
{
    if (strncmp(name, "step-", 5) || !name[5]) return -1;
    for (const char *p = name + 5; *p; p++)
        if (!isdigit((unsigned char)*p)) return -1;
    return strtol(name + 5, NULL, 10);
}

typedef struct { long step; char *name; } entry;

static int by_step_desc(const void *a, const void *b)
{
    long x = ((const entry *)a)->step, y = ((const entry *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int prune(const char *out, long current, int keep)
{
    DIR *d = opendir(out);
    if (!d) return io_fail(out);
    entry *e = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        long k = step_of(de->d_name);
        if (!strncmp(de->d_name, ".step-", 6) && len > 10 &&
            (!strcmp(de->d_name + len - 4, ".tmp") || !strcmp(de->d_name + len - 4, ".old")))
            k = -1;   /* a killed save's leftovers: always deleted */
        else if (k < 0 || k == current) continue;
        if (n == cap) e = qw_realloc(e, (cap = cap ? 2 * cap : 16) * sizeof *e);
        e[n++] = (entry){ k, qw_strdup(de->d_name) };
    }
    closedir(d);
    if (n) qsort(e, n, sizeof *e, by_step_desc);   /* qsort(NULL, 0) is undefined */
    int st = 0;
    for (size_t i = 0; i < n; i++) {
        if (!st && (e[i].step < 0 || (keep > 0 && i + 1 >= (size_t)keep))) {
            char *p = qw_path_join(out, e[i].name);
            st = rm_rf(p);
            free(p);
        }
        free(e[i].name);
    }
    free(e);
    return st;
}

/* The name OUT/latest holds ("step-NNNNNN"), in *name (caller frees);
 * NULL when there is no latest. */
static int latest_name(const char *out, char **name)
{
    *name = NULL;
    char *lp = qw_path_join(out, "latest");
    qw_buf b = {0};
    int found, st = qw_read_file(lp, &b, &found);
    if (!st && found) {
        while (b.n && (b.p[b.n - 1] == '\n' || b.p[b.n - 1] == '\r')) b.n--;
        const char *s = qw_buf_cstr(&b);
        if (step_of(s) < 0 || strlen(s) != b.n) st = qw_error(QW_EXIT_DATA, "'%s': does not name a step directory", lp);
        else *name = qw_strdup(s);
    }
    qw_buf_free(&b);
    free(lp);
    return st;
}

static int recover_latest(const char *out)
{
    char *name;
    int st = latest_name(out, &name);
    if (!st && name) st = recover_aside(out, name);
    free(name);
    return st;
}

int qw_ckpt_latest(const char *out, char **dir)
{
    char *name;
    *dir = NULL;
    int st = latest_name(out, &name);
    if (st || !name) return st;
    char *d = qw_path_join(out, name), *aside = aside_of(out, name);
    struct stat sb;
    if (stat(d, &sb) != 0 && stat(aside, &sb) == 0) {   /* a save was interrupted while replacing it */
        free(d);
        d = aside, aside = NULL;
    }
    if (stat(d, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = qw_error(QW_EXIT_DATA, "'%s/latest': names '%s', which is not a directory", out, name);
        free(d);
    } else *dir = d;
    free(aside);
    free(name);
    return st;
}

int qw_ckpt_save(const qw_ckpt_opts *o, const qw_params *P, const qw_params *M, const qw_params *V,
                 const qw_train_state *s, char **dir)
{
    if (dir) *dir = NULL;
    if (s->step < 0) return qw_error(QW_EXIT_USAGE, "'%s': negative step %ld", o->out, s->step);
    if (mkdir(o->out, 0777) != 0 && errno != EEXIST) return io_fail(o->out);
    char name[32], tmpname[40], line[40];
    snprintf(name, sizeof name, "step-%06ld", s->step);
    snprintf(tmpname, sizeof tmpname, ".%s.tmp", name);
    snprintf(line, sizeof line, "%s\n", name);
    char *tmp = qw_path_join(o->out, tmpname), *dst = qw_path_join(o->out, name);
    char *latest = qw_path_join(o->out, "latest");
    int st = recover_latest(o->out);
    if (!st) st = recover_aside(o->out, name);
    if (!st) st = rm_rf(tmp);
    if (!st) st = write_all(tmp, o, P, M, V, s);
    if (!st) st = install(o->out, tmp, name);
    if (!st) st = qw_write_file_atomic(latest, line, strlen(line));
    if (st) {
        /* keep the first error's message; clean up what this save made */
        char *msg = qw_strdup(qw_error_msg());
        rm_rf(tmp);
        qw_error(st, "%s", msg);
        free(msg);
    } else st = prune(o->out, s->step, o->keep_last);
    if (!st && dir) *dir = qw_strdup(dst);
    free(tmp);
    free(dst);
    free(latest);
    return st;
}

/* ---- resolve and load ---- */

static int is_step_dir(const char *path)
{
    char *p = qw_path_join(path, "trainer_state/state.json");
    int ok = access(p, R_OK) == 0;
    free(p);
    return ok;
}

int qw_ckpt_resolve(const char *path, char **dir)
{
    *dir = NULL;
    if (is_step_dir(path)) { *dir = qw_strdup(path); return 0; }
    char *d;
    int st = qw_ckpt_latest(path, &d);
    if (st) return st;
    if (!d) return qw_error(QW_EXIT_DATA, "'%s': not a checkpoint (no trainer_state/state.json or latest)", path);
    if (!is_step_dir(d)) {
        st = qw_error(QW_EXIT_DATA, "'%s/latest': names '%s', which is not a checkpoint", path, d);
        free(d);
        return st;
    }
    *dir = d;
    return 0;
}

int qw_ckpt_model_dir(const char *path, char **dir)
{
    *dir = NULL;
    char *cfg = qw_path_join(path, "config.json");
    struct stat sb;
    int has_config = stat(cfg, &sb) == 0;
    free(cfg);
    int st = has_config ? 0 : qw_ckpt_latest(path, dir);
    if (!st && !*dir) *dir = qw_strdup(path);
    return st;
}

/* The config fields that shape or compute the model. */
#define INT_FIELD(f) { #f, offsetof(qw_config, f), 0 }
#define DBL_FIELD(f) { #f, offsetof(qw_config, f), 1 }
static const struct { const char *name; size_t off; int dbl; } config_fields[] = {
    INT_FIELD(arch), INT_FIELD(vocab_size), INT_FIELD(hidden_size), INT_FIELD(intermediate_size),
    INT_FIELD(num_hidden_layers), INT_FIELD(num_attention_heads), INT_FIELD(num_key_value_heads),
    INT_FIELD(head_dim), INT_FIELD(max_position_embeddings), DBL_FIELD(rms_norm_eps),
    INT_FIELD(tie_word_embeddings), INT_FIELD(attention_bias), DBL_FIELD(rope_theta), INT_FIELD(rope_type),
    DBL_FIELD(rope_factor), INT_FIELD(rope_original_max_position), DBL_FIELD(rope_attention_factor),
    DBL_FIELD(yarn_beta_fast), DBL_FIELD(yarn_beta_slow), DBL_FIELD(yarn_mscale), DBL_FIELD(yarn_mscale_all_dim),
    INT_FIELD(yarn_truncate), INT_FIELD(num_experts), INT_FIELD(num_experts_per_tok),
    INT_FIELD(moe_intermediate_size), INT_FIELD(decoder_sparse_step), INT_FIELD(norm_topk_prob),
    DBL_FIELD(router_aux_loss_coef), INT_FIELD(output_router_logits), INT_FIELD(n_mlp_only_layers),
    INT_FIELD(score_head),
};

static int check_config(const char *dir, const qw_config *run)
{
    qw_config c;
    char *path = qw_path_join(dir, "config.json");
    int st = qw_config_load(path, &c);
    for (size_t i = 0; !st && i < sizeof config_fields / sizeof *config_fields; i++) {
        const char *a = (const char *)&c + config_fields[i].off, *b = (const char *)run + config_fields[i].off;
        if (config_fields[i].dbl ? *(const double *)a != *(const double *)b : *(const int *)a != *(const int *)b) {
            char x[32], y[32];
            if (config_fields[i].dbl) snprintf(x, sizeof x, "%.17g", *(const double *)a), snprintf(y, sizeof y, "%.17g", *(const double *)b);
            else snprintf(x, sizeof x, "%d", *(const int *)a), snprintf(y, sizeof y, "%d", *(const int *)b);
            st = qw_error(QW_EXIT_DATA, "'%s': %s is %s, the run has %s", path, config_fields[i].name, x, y);
        }
    }
    if (!st && memcmp(c.mlp_only_layers, run->mlp_only_layers, (size_t)c.n_mlp_only_layers * sizeof *c.mlp_only_layers))
        st = qw_error(QW_EXIT_DATA, "'%s': mlp_only_layers differ from the run's", path);
    free(path);
    return st;
}

static int load_moments(const char *path, const qw_params *P, qw_params *M, qw_params *V)
{
    qw_st *st_file;
    int st = qw_st_open(path, &st_file);
    if (st) return st;
    qw_buf name = {0};
    if (qw_st_count(st_file) != 2 * P->n)
        st = qw_error(QW_EXIT_DATA, "'%s': %d tensors, expected %d (exp_avg and exp_avg_sq of %d parameters)",
                      path, qw_st_count(st_file), 2 * P->n, P->n);
    for (int pass = 0; pass < 2 && !st; pass++) {
        qw_params *X = pass ? V : M;
        for (int i = 0; i < P->n && !st; i++) {
            const qw_param *p = &P->p[i];
            name.n = 0;
            qw_buf_adds(&name, pass ? "exp_avg_sq." : "exp_avg.");
            qw_buf_adds(&name, p->name);
            const qw_st_tensor *t = qw_st_find(st_file, qw_buf_cstr(&name));
            int same = t && t->dtype == QW_DT_F32 && t->ndim == p->ndim;
            for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
            if (!t) st = qw_error(QW_EXIT_DATA, "'%s': '%s': missing", path, name.p);
            else if (!same) st = qw_error(QW_EXIT_DATA, "'%s': '%s': not F32 of the parameter's shape", path, name.p);
            else memcpy(qw_params_ptr(X, p), t->data, (size_t)p->numel * sizeof(float));
        }
    }
    qw_buf_free(&name);
    qw_st_close(st_file);
    return st;
}

int qw_ckpt_load(const char *dir, qw_params *P, qw_params *M, qw_params *V, qw_train_state *s)
{
    memset(s, 0, sizeof *s);
    char *sp = qw_path_join(dir, "trainer_state/state.json"), *op = qw_path_join(dir, "trainer_state/optimizer.safetensors");
    qw_buf text = {0};
    int found;
    int st = check_config(dir, &P->cfg);
    qw_st *w = NULL;
    if (!st) st = qw_st_open(dir, &w);
    if (!st) st = qw_params_load(P, w, 0);
    if (w) qw_st_close(w);
    if (!st) st = load_moments(op, P, M, V);
    if (!st) st = qw_read_file(sp, &text, &found);
    if (!st && !found) st = qw_error(QW_EXIT_DATA, "'%s': missing", sp);
    if (!st) st = parse_state(qw_buf_cstr(&text), sp, s);
    if (st) qw_train_state_free(s);
    qw_buf_free(&text);
    free(sp);
    free(op);
    return st;
}
