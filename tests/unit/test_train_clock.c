/* test_train_clock.c — the train loop reads its step clock (tok_per_s)
 * only after the device has finished the step: between a step's optimizer
 * update and the read (the mem_stats call that follows it) the backend's
 * sync op runs.  A CPU backend whose sync, adamw and mem_stats are wrapped
 * records the order. */
#include <stdint.h>
#include <unistd.h>

#include "qwtest.h"
#include "qw/ops.h"
#include "qw/shard.h"
#include "qw/train.h"

static qw_ops wrapped;
static int pending, updates, syncs, reads, unsynced_reads;

static void w_sync(void) { pending = 0; syncs++; qw_ops_cpu()->sync(); }
static void w_adamw(float *p, void *p_act, const float *g, float *m, float *v, size_t n, const qw_adamw_scalars *s)
{
    qw_ops_cpu()->adamw(p, p_act, g, m, v, n, s);
    pending = 1;
    updates++;
}
static void w_mem_stats(size_t *in_use, size_t *peak)
{
    if (updates) {   /* reads after the first update: each must follow a sync */
        reads++;
        if (pending) unsynced_reads++;
    }
    qw_ops_cpu()->mem_stats(in_use, peak);
}

TEST(step_clock_after_sync)
{
    char dir[] = "/tmp/qw_train_clock_XXXXXX", shard[128], cfg[128], out[128];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(shard, sizeof shard, "%s/a.qwp", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    enum { L = 17, ROWS = 16, V = 64 };
    qw_shard_params sp = {.row_len = L, .vocab_size = V};
    qw_shard_writer *w;
    int32_t tok[L];
    uint32_t starts[L] = {0};
    CHECK(qw_shard_writer_open(shard, &sp, &w) == 0);
    for (int r = 0; r < ROWS; r++) {
        for (int i = 0; i < L; i++) tok[i] = (r * 7 + i * 3) % V;
        qw_shard_row row = {tok, starts, 1, L, NULL, NULL};
        CHECK(qw_shard_writer_add(w, &row) == 0);
    }
    CHECK(qw_shard_writer_close(w) == 0);
    FILE *f = fopen(cfg, "w");
    fputs("{\"model_type\":\"qwen3\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":64,"
          "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":16,"
          "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-6,\"rope_theta\":10000,"
          "\"tie_word_embeddings\":true,\"initializer_range\":0.02}\n", f);
    fclose(f);

    wrapped = *qw_ops_cpu();
    wrapped.sync = w_sync;
    wrapped.adamw = w_adamw;
    wrapped.mem_stats = w_mem_stats;
    qw_train_opts o;
    qw_train_defaults(&o);
    const char *data[] = {shard};
    o.config_path = cfg;
    o.data = data;
    o.n_data = 1;
    o.seq_len = L - 1;
    o.batch_tokens = 2 * (L - 1);
    o.steps = 4;
    o.sched.total = 4;
    o.out = out;
    o.quiet = 1;
    o.ops = &wrapped;
    CHECK(qw_train_run(&o) == 0);
    CHECK(updates >= 4 && reads >= 4 && syncs >= 4);
    CHECK_MSG(unsynced_reads == 0, "%d of %d clock reads came before a sync after the update", unsynced_reads, reads);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    PLAN(1);
    RUN(step_clock_after_sync);
    return qwtest_finish();
}
