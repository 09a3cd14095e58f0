/* test_ckpt.c — checkpoint round trip (weights, moments, state), latest,
 * keep-last pruning, replacing a step, config mismatch and bad files, and
 * atomicity under a file-size limit (a full disk) in a child process. */
#include "qwtest.h"
#include "qw/buf.h"
#include "qw/ckpt.h"
#include "qw/cli.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[64], out[128], tokdir[128];

static const char *cfg_json =
    "{\"model_type\": \"qwen3\", \"vocab_size\": 64, \"hidden_size\": 16, \"intermediate_size\": 32,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 8,"
    " \"max_position_embeddings\": 128, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0,"
    " \"tie_word_embeddings\": false, \"initializer_range\": 0.02}";

static void model(qw_params *P, qw_params *M, qw_params *V, const char *json, uint64_t seed)
{
    qw_config c;
    if (qw_config_parse(json, "test", &c) || qw_params_init(P, &c) || qw_params_alloc_like(M, P) ||
        qw_params_alloc_like(V, P)) {
        fprintf(stderr, "setup: %s\n", qw_error_msg());
        exit(1);
    }
    qw_params_init_random(P, seed);
    for (size_t i = 0; i < P->total; i++) M->data[i] = 1e-3f * (float)(i % 97) - (float)seed, V->data[i] = 1e-4f * (float)(i % 89) + (float)seed;
}

static void drop(qw_params *P, qw_params *M, qw_params *V) { qw_params_free(P); qw_params_free(M); qw_params_free(V); }

static qw_train_state state(long step)
{
    qw_train_state s = { .step = step, .tokens = 1000LL * step + 7, .adamw = qw_adamw_defaults(),
                         .sched = { QW_SCHED_WSD, 3e-4, 0.1, 10, 1000, 0.2, QW_DECAY_SQRT } };
    s.data = cJSON_Parse("{\"shard\": 3, \"row\": 17, \"epoch\": 0}");
    s.rng = cJSON_Parse("{\"seed\": \"0x9e3779b97f4a7c15\", \"counter\": \"12\"}");
    s.run = cJSON_Parse("{\"lr\": 0.0003, \"batch\": 8}");
    return s;
}

static int save(const qw_params *P, const qw_params *M, const qw_params *V, long step, int keep)
{
    qw_ckpt_opts o = { .out = out, .keep_last = keep, .tokenizer_dir = tokdir };
    qw_train_state s = state(step);
    int st = qw_ckpt_save(&o, P, M, V, &s, NULL);
    qw_train_state_free(&s);
    return st;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    qw_buf b = {0};
    char tmp[4096];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) qw_buf_add(&b, tmp, k);
    fclose(f);
    qw_buf_cstr(&b);
    return b.p;
}

static int exists(const char *fmt, const char *a)
{
    char p[512];
    struct stat sb;
    snprintf(p, sizeof p, fmt, a);
    return stat(p, &sb) == 0;
}

static int latest_is(const char *name)
{
    char p[256], want[64];
    snprintf(p, sizeof p, "%s/latest", out);
    snprintf(want, sizeof want, "%s\n", name);
    char *t = slurp(p);
    int ok = t && !strcmp(t, want);
    free(t);
    return ok;
}

/* Every tensor equal (the arena's alignment padding is no tensor). */
static int same_arena(const qw_params *a, const qw_params *b)
{
    if (a->total != b->total || a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (memcmp(qw_params_ptr(a, &a->p[i]), qw_params_ptr(b, &a->p[i]), (size_t)a->p[i].numel * sizeof(float)))
            return 0;
    return 1;
}

/* Load `dir` into a fresh model and compare with (P, M, V) and state(step). */
static void check_load(const char *dir, const qw_params *P, const qw_params *M, const qw_params *V, long step)
{
    qw_params P2, M2, V2;
    model(&P2, &M2, &V2, cfg_json, 99);
    qw_train_state s;
    int st = qw_ckpt_load(dir, &P2, &M2, &V2, &s);
    CHECK_MSG(st == 0, "%s", qw_error_msg());
    if (st == 0) {
        CHECK(same_arena(P, &P2) && same_arena(M, &M2) && same_arena(V, &V2));
        qw_train_state w = state(step);
        CHECK(s.step == w.step && s.tokens == w.tokens);
        CHECK(!memcmp(&s.adamw, &w.adamw, sizeof s.adamw));
        CHECK(s.sched.kind == w.sched.kind && s.sched.lr == w.sched.lr && s.sched.min_lr_ratio == w.sched.min_lr_ratio &&
              s.sched.warmup == w.sched.warmup && s.sched.total == w.sched.total &&
              s.sched.decay_frac == w.sched.decay_frac && s.sched.decay_shape == w.sched.decay_shape);
        CHECK(cJSON_Compare(s.data, w.data, 1) && cJSON_Compare(s.rng, w.rng, 1) && cJSON_Compare(s.run, w.run, 1));
        qw_train_state_free(&w);
        qw_train_state_free(&s);
    }
    drop(&P2, &M2, &V2);
}

TEST(save_resolve_load_round_trip)
{
    qw_params P, M, V;
    model(&P, &M, &V, cfg_json, 1);
    qw_ckpt_opts o = { .out = out, .keep_last = 2, .tokenizer_dir = tokdir };
    qw_train_state s = state(5);
    char *dir = NULL;
    CHECK_MSG(qw_ckpt_save(&o, &P, &M, &V, &s, &dir) == 0, "%s", qw_error_msg());
    qw_train_state_free(&s);
    char want[256];
    snprintf(want, sizeof want, "%s/step-000005", out);
    CHECK_STR(dir, want);
    CHECK(latest_is("step-000005"));
    CHECK(exists("%s/model.safetensors", want) && exists("%s/config.json", want));
    CHECK(exists("%s/trainer_state/optimizer.safetensors", want) && exists("%s/trainer_state/state.json", want));
    CHECK(exists("%s/tokenizer.json", want) && !exists("%s/merges.txt", want));
    CHECK(!exists("%s/.step-000005.tmp", out) && !exists("%s/.latest.tmp", out));

    char *res = NULL;
    CHECK(qw_ckpt_resolve(out, &res) == 0);
    CHECK_STR(res, want);
    free(res);
    CHECK(qw_ckpt_resolve(want, &res) == 0);
    CHECK_STR(res, want);
    free(res);
    check_load(dir, &P, &M, &V, 5);
    free(dir);
    drop(&P, &M, &V);
}

TEST(keep_last_and_replace)
{
    qw_params P, M, V;
    char stale[256];
    snprintf(stale, sizeof stale, "%s/.step-000003.tmp", out);   /* a killed save's leftovers */
    mkdir(stale, 0777);
    for (long step = 6; step <= 8; step++) {
        model(&P, &M, &V, cfg_json, (uint64_t)step);
        CHECK_MSG(save(&P, &M, &V, step, 2) == 0, "%s", qw_error_msg());
        drop(&P, &M, &V);
    }
    CHECK(latest_is("step-000008"));
    CHECK(!exists("%s/step-000005", out) && !exists("%s/step-000006", out));
    CHECK(exists("%s/step-000007", out) && exists("%s/step-000008", out));
    CHECK(!exists("%s/.step-000003.tmp", out));

    /* saving step 8 again replaces it whole */
    model(&P, &M, &V, cfg_json, 42);
    CHECK_MSG(save(&P, &M, &V, 8, 2) == 0, "%s", qw_error_msg());
    char dir[256];
    snprintf(dir, sizeof dir, "%s/step-000008", out);
    check_load(dir, &P, &M, &V, 8);
    CHECK(exists("%s/step-000007", out) && !exists("%s/.step-000008.tmp", out));
    drop(&P, &M, &V);
}

/* Replacing a step where renameat2(RENAME_EXCHANGE) is missing (NFS,
 * Lustre; forced here by QW_CKPT_RENAME_FALLBACK): after each rename of the
 * fallback a reader resolving OUT finds a whole checkpoint (the old one
 * while the new one is not in place, then the new one), and a save stopped
 * there, as by a crash, is repaired by the next save. */
static const qw_params *want[3];     /* what a reader must find at the next stage */
static const qw_params *after[3];    /* ... after "aside" */
static const char *crash_at;
static int hook_calls;
static long want_step;

static void resolves_to(const qw_params *const *w, const char *when)
{
    char *dir = NULL;
    int st = qw_ckpt_resolve(out, &dir);
    CHECK_MSG(st == 0, "%s: %s", when, qw_error_msg());
    if (!st) check_load(dir, w[0], w[1], w[2], want_step);
    free(dir);
    char *mdir = NULL;
    CHECK_MSG(qw_ckpt_model_dir(out, &mdir) == 0 && mdir, "%s: %s", when, qw_error_msg());
    free(mdir);
}

static int stage_hook(const char *stage)
{
    hook_calls++;
    resolves_to(strcmp(stage, "aside") ? after : want, stage);
    if (crash_at && !strcmp(stage, crash_at)) return qw_error(QW_EXIT_FAIL, "crash at %s", stage);
    return 0;
}

TEST(replace_without_rename_exchange)
{
    qw_params P[4], M[4], V[4];   /* seeds 42 (saved first as step 8), 43, 44, 45 */
    for (int i = 0; i < 4; i++) model(&P[i], &M[i], &V[i], cfg_json, 42 + (uint64_t)i);
    char saved_out[sizeof out];
    memcpy(saved_out, out, sizeof out);
    snprintf(out, sizeof out, "%s/out-fallback", root);
    CHECK_MSG(save(&P[0], &M[0], &V[0], 8, 2) == 0, "%s", qw_error_msg());
    setenv("QW_CKPT_RENAME_FALLBACK", "1", 1);
    qw_ckpt_install_hook = stage_hook;
    char dir[256], old[256];
    snprintf(dir, sizeof dir, "%s/step-000008", out);
    snprintf(old, sizeof old, "%s/.step-000008.old", out);
    struct stat sb;

    /* a whole replacement: the hook sees the old one, then the new one */
    want_step = 8;
    want[0] = &P[0], want[1] = &M[0], want[2] = &V[0];
    after[0] = &P[1], after[1] = &M[1], after[2] = &V[1];
    crash_at = NULL;
    hook_calls = 0;
    CHECK_MSG(save(&P[1], &M[1], &V[1], 8, 2) == 0, "%s", qw_error_msg());
    CHECK(hook_calls == 2);
    check_load(dir, &P[1], &M[1], &V[1], 8);
    CHECK(stat(old, &sb) != 0);

    /* a crash after putting the old one aside: readers take it; the next save puts it back */
    want[0] = &P[1], want[1] = &M[1], want[2] = &V[1];
    crash_at = "aside";
    CHECK(save(&P[2], &M[2], &V[2], 8, 2) == QW_EXIT_FAIL);
    CHECK(stat(dir, &sb) != 0 && stat(old, &sb) == 0);
    resolves_to(want, "after the crash");
    qw_ckpt_install_hook = NULL;
    CHECK_MSG(save(&P[3], &M[3], &V[3], 9, 3) == 0, "%s", qw_error_msg());
    check_load(dir, &P[1], &M[1], &V[1], 8);
    CHECK(stat(old, &sb) != 0);

    /* a crash after renaming the new one in: it is the checkpoint; the next save deletes the old one */
    snprintf(dir, sizeof dir, "%s/step-000009", out);
    snprintf(old, sizeof old, "%s/.step-000009.old", out);
    qw_ckpt_install_hook = stage_hook;
    want_step = 9;
    want[0] = &P[3], want[1] = &M[3], want[2] = &V[3];
    after[0] = &P[2], after[1] = &M[2], after[2] = &V[2];
    crash_at = "installed";
    CHECK(save(&P[2], &M[2], &V[2], 9, 3) == QW_EXIT_FAIL);
    check_load(dir, &P[2], &M[2], &V[2], 9);
    CHECK(stat(old, &sb) == 0);
    qw_ckpt_install_hook = NULL;
    CHECK_MSG(save(&P[3], &M[3], &V[3], 10, 3) == 0, "%s", qw_error_msg());
    CHECK(stat(old, &sb) != 0);
    check_load(dir, &P[2], &M[2], &V[2], 9);

    unsetenv("QW_CKPT_RENAME_FALLBACK");
    memcpy(out, saved_out, sizeof out);
    for (int i = 0; i < 4; i++) drop(&P[i], &M[i], &V[i]);
}

/* A file-size limit makes writes fail with EFBIG part-way through a save:
 * at the weights (limit below model.safetensors) or at the moments (twice
 * the weights' size).  The previous checkpoint must stay whole and latest
 * unchanged. */
TEST(failed_save_leaves_previous_checkpoint)
{
    char weights[256];
    snprintf(weights, sizeof weights, "%s/step-000008/model.safetensors", out);
    struct stat sb;
    CHECK(stat(weights, &sb) == 0);
    rlim_t limits[2] = { (rlim_t)sb.st_size / 2, (rlim_t)sb.st_size * 3 / 2 };
    for (int k = 0; k < 2; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            qw_params P, M, V;
            model(&P, &M, &V, cfg_json, 7);
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = { limits[k], limits[k] };
            setrlimit(RLIMIT_FSIZE, &rl);
            int st = save(&P, &M, &V, 9, 2);
            if (st) fprintf(stderr, "  expected failure: %s\n", qw_error_msg());
            _exit(st);
        }
        int ws;
        CHECK(waitpid(pid, &ws, 0) == pid);
        CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == QW_EXIT_FAIL, "limit %d: status %d", k, ws);
        CHECK(latest_is("step-000008"));
        CHECK(!exists("%s/step-000009", out) && !exists("%s/.step-000009.tmp", out));
        CHECK(exists("%s/step-000007", out));
    }
    qw_params P, M, V;
    model(&P, &M, &V, cfg_json, 42);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/step-000008", out);
    check_load(dir, &P, &M, &V, 8);
    drop(&P, &M, &V);
}

TEST(config_mismatch_is_data_error)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/step-000008", out);
    qw_params P, M, V;
    qw_train_state s;
    qw_buf j = {0};
    qw_buf_adds(&j, cfg_json);
    char *p = strstr(j.p, "10000.0");
    memcpy(p, "20000.0", 7);   /* another RoPE θ: same shapes, other model */
    model(&P, &M, &V, qw_buf_cstr(&j), 1);
    CHECK(qw_ckpt_load(dir, &P, &M, &V, &s) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "rope_theta") != NULL && strstr(qw_error_msg(), "config.json") != NULL);
    CHECK(s.data == NULL && s.rng == NULL && s.run == NULL);
    drop(&P, &M, &V);
    p = strstr(j.p, "\"hidden_size\": 16");
    memcpy(p, "\"hidden_size\": 32", 17);
    model(&P, &M, &V, qw_buf_cstr(&j), 1);
    CHECK(qw_ckpt_load(dir, &P, &M, &V, &s) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "hidden_size is 16, the run has 32") != NULL);
    drop(&P, &M, &V);
    qw_buf_free(&j);
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

TEST(bad_checkpoints_are_data_errors)
{
    char *res = NULL, path[512], dir[256];
    CHECK(qw_ckpt_resolve(root, &res) == QW_EXIT_DATA && res == NULL);
    CHECK(strstr(qw_error_msg(), "not a checkpoint") != NULL);
    snprintf(path, sizeof path, "%s/latest", out);
    put(path, "../etc\n");
    CHECK(qw_ckpt_resolve(out, &res) == QW_EXIT_DATA);
    put(path, "step-000123\n");
    CHECK(qw_ckpt_resolve(out, &res) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "'step-000123'") != NULL);
    put(path, "step-000008\n");

    snprintf(dir, sizeof dir, "%s/step-000008", out);
    snprintf(path, sizeof path, "%s/trainer_state/state.json", dir);
    char *good = slurp(path);
    qw_params P, M, V;
    qw_train_state s;
    model(&P, &M, &V, cfg_json, 1);
    const char *bad[][2] = {
        { "[1, 2]", "not a JSON object" },
        { "{\"format\": \"other\"}", "qw-trainer-state" },
        { "{\"format\": \"qw-trainer-state\", \"version\": 2}", "version 2" },
        { "{\"format\": \"qw-trainer-state\", \"version\": 1, \"optimizer\": {}, \"schedule\": {}, \"step\": 1,"
          " \"tokens\": 2}", "'beta1'" },
    };
    for (int i = 0; i < 4; i++) {
        put(path, bad[i][0]);
        CHECK(qw_ckpt_load(dir, &P, &M, &V, &s) == QW_EXIT_DATA);
        CHECK_MSG(strstr(qw_error_msg(), bad[i][1]) && strstr(qw_error_msg(), "state.json"), "%s", qw_error_msg());
    }
    /* counts that no long holds, or that are not counts (a cast of them was
     * undefined; found by fuzzing) */
    const char *tmpl = "{\"format\": \"qw-trainer-state\", \"version\": 1, \"step\": %s, \"tokens\": %s,"
        " \"optimizer\": {\"beta1\": 0.9, \"beta2\": 0.95, \"eps\": 1e-8, \"weight_decay\": 0.1},"
        " \"schedule\": {\"kind\": \"cosine\", \"lr\": 0.001, \"min_lr_ratio\": 0.1, \"warmup\": %s,"
        " \"total\": 100, \"decay_frac\": 0.2, \"decay_shape\": \"linear\"}}";
    const char *counts[][4] = {
        { "8", "100", "10", NULL },
        { "1e300", "1", "1", "'step': 1e+300 is not a count" },
        { "1", "2.5", "1", "'tokens': 2.5 is not a count" },
        { "1", "1", "-1e30", "'warmup': -1e+30 is not a count" },
    };
    for (int i = 0; i < 4; i++) {
        char text[1024];
        snprintf(text, sizeof text, tmpl, counts[i][0], counts[i][1], counts[i][2]);
        put(path, text);
        int st = qw_ckpt_load(dir, &P, &M, &V, &s);
        if (!counts[i][3]) {
            CHECK_MSG(st == 0 && s.step == 8 && s.tokens == 100 && s.sched.warmup == 10, "%s", qw_error_msg());
            qw_train_state_free(&s);
        } else {
            CHECK_MSG(st == QW_EXIT_DATA && strstr(qw_error_msg(), counts[i][3]), "%s", qw_error_msg());
        }
    }
    put(path, good);
    free(good);

    /* an optimizer file missing one parameter's moments */
    snprintf(path, sizeof path, "%s/trainer_state/optimizer.safetensors", dir);
    qw_st_writer *w = qw_st_writer_new();
    for (int i = 1; i < P.n; i++) {
        char name[160];
        snprintf(name, sizeof name, "exp_avg.%s", P.p[i].name);
        qw_st_writer_add(w, name, QW_DT_F32, P.p[i].ndim, P.p[i].shape, qw_params_ptr(&M, &P.p[i]));
        snprintf(name, sizeof name, "exp_avg_sq.%s", P.p[i].name);
        qw_st_writer_add(w, name, QW_DT_F32, P.p[i].ndim, P.p[i].shape, qw_params_ptr(&V, &P.p[i]));
    }
    CHECK(qw_st_writer_write(w, path) == 0);
    qw_st_writer_free(w);
    CHECK(qw_ckpt_load(dir, &P, &M, &V, &s) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "optimizer.safetensors") != NULL);
    drop(&P, &M, &V);
}

TEST(keep_all_and_negative_step)
{
    qw_params P, M, V;
    model(&P, &M, &V, cfg_json, 11);
    CHECK_MSG(save(&P, &M, &V, 11, 0) == 0, "%s", qw_error_msg());
    CHECK(exists("%s/step-000007", out) && exists("%s/step-000008", out) && exists("%s/step-000011", out));
    CHECK(latest_is("step-000011"));
    CHECK(save(&P, &M, &V, -1, 0) == QW_EXIT_USAGE);
    CHECK(latest_is("step-000011"));
    drop(&P, &M, &V);
}

/* A generator saved mid-stream (with a spare normal pending) and restored
 * continues with the same numbers. */
TEST(rng_state_round_trip)
{
    qw_rng a, b;
    qw_rng_init(&a, 0x9e3779b97f4a7c15ULL, 0xfffffffffffffff1ULL);
    for (int i = 0; i < 5; i++) qw_rng_u32(&a);
    qw_rng_normal(&a);
    cJSON *j = qw_ckpt_rng_json(&a);
    char *text = cJSON_PrintUnformatted(j);
    cJSON *back = cJSON_Parse(text);
    CHECK(qw_ckpt_rng_parse(back, "state.json: rng", &b) == 0);
    CHECK(a.has_spare == 1 && b.has_spare == 1);
    for (int i = 0; i < 20; i++) {
        CHECK(qw_rng_u64(&a) == qw_rng_u64(&b));
        CHECK(qw_rng_normal(&a) == qw_rng_normal(&b));
    }
    cJSON_DeleteItemFromObject(back, "counter");
    cJSON_AddNumberToObject(back, "counter", 12);   /* a number, not a hex string */
    CHECK(qw_ckpt_rng_parse(back, "state.json: rng", &b) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "'state.json: rng'") != NULL);
    cJSON *bad = cJSON_Parse("{\"seed\": \"1\", \"stream\": \"2\", \"counter\": \"3\", \"spare\": \"0\","
                             " \"buf\": [\"1\", \"2\", \"3\", \"x4\"], \"used\": 4, \"has_spare\": 0}");
    CHECK(qw_ckpt_rng_parse(bad, "r", &b) == QW_EXIT_DATA);
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(bad, "buf"), 3, cJSON_CreateString("4"));
    CHECK(qw_ckpt_rng_parse(bad, "r", &b) == 0 && b.buf[3] == 4 && b.counter == 3 && b.used == 4);
    cJSON_Delete(bad);
    cJSON_Delete(back);
    cJSON_Delete(j);
    free(text);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/qw-test-ckpt-XXXXXX");
    if (!mkdtemp(root)) return 1;
    snprintf(out, sizeof out, "%s/out", root);
    snprintf(tokdir, sizeof tokdir, "%s/tok", root);
    mkdir(tokdir, 0777);
    char p[256];
    snprintf(p, sizeof p, "%s/tokenizer.json", tokdir);
    put(p, "{\"model\": {}}\n");
    PLAN(8);
    RUN(save_resolve_load_round_trip);
    RUN(keep_last_and_replace);
    RUN(replace_without_rename_exchange);
    RUN(failed_save_leaves_previous_checkpoint);
    RUN(config_mismatch_is_data_error);
    RUN(bad_checkpoints_are_data_errors);
    RUN(keep_all_and_negative_step);
    RUN(rng_state_round_trip);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) return 1;
    return qwtest_finish();
}
