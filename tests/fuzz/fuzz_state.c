/* fuzz_state.c — a checkpoint's trainer_state/state.json (libcore/ckpt.c),
 * read as qw-pretrain --resume reads it: the input replaces the state of a
 * real checkpoint of a tiny model (saved once at start-up by
 * qw_ckpt_save), which qw_ckpt_load then loads whole; the random-number
 * generator states it holds are parsed as well. */
#include "fuzz.h"

#include "qw/ckpt.h"

static const char *cfg_json =
    "{\"model_type\": \"qwen3\", \"vocab_size\": 32, \"hidden_size\": 8, \"intermediate_size\": 16,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 4,"
    " \"tie_word_embeddings\": true}";

static qw_params P, M, V;
static char *step_dir, *state_path;

static void model(void)
{
    qw_config c;
    fz_expect(qw_config_parse(cfg_json, "tiny", &c), 0, NULL);
    fz_expect(qw_params_init(&P, &c), 0, NULL);
    fz_expect(qw_params_alloc_like(&M, &P), 0, NULL);
    fz_expect(qw_params_alloc_like(&V, &P), 0, NULL);
    qw_params_init_random(&P, 1);
    qw_rng r;
    qw_rng_init(&r, 42, 7);
    qw_rng_u32(&r);
    qw_train_state s = {.step = 3, .tokens = 96, .adamw = qw_adamw_defaults(),
                        .sched = {QW_SCHED_WSD, 3e-4, 0.1, 1, 10, 0.2, QW_DECAY_SQRT}};
    s.data = cJSON_Parse("{\"next_row\": 12, \"rows_per_step\": 4}");
    s.rng = cJSON_CreateObject();
    cJSON_AddItemToObject(s.rng, "data", qw_ckpt_rng_json(&r));
    s.run = cJSON_Parse("{\"data_identity\": \"0123456789abcdef\", \"seq_len\": 8, \"batch_tokens\": 32}");
    char *out = fz_path("run");
    qw_ckpt_opts o = {.out = out};
    fz_expect(qw_ckpt_save(&o, &P, &M, &V, &s, &step_dir), 0, NULL);
    qw_train_state_free(&s);
    free(out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    model();
    state_path = qw_path_join(step_dir, "trainer_state/state.json");
    fz_save_seed(state_path);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(state_path, data, size);
    qw_train_state s;
    int rc = qw_ckpt_load(step_dir, &P, &M, &V, &s);
    fz_expect(rc, FZ_DATA, state_path);
    if (rc) return 0;
    if (s.step < 0 || s.tokens < 0) fz_fatal("a negative step or token count loaded", 0);
    const cJSON *g;
    cJSON_ArrayForEach(g, s.rng) {
        qw_rng r;
        fz_expect(qw_ckpt_rng_parse(g, state_path, &r), FZ_DATA, state_path);
    }
    qw_train_state_free(&s);
    return 0;
}
