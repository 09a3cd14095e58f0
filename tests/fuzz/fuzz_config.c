/* fuzz_config.c — Hugging Face config.json (libcore/config.c), loaded as
 * every program loads it; a config that loads is counted, and one that qw
 * can write (qwen3, qwen3_moe) is written and must load back the same, as
 * a checkpoint's config.json does. */
#include "fuzz.h"

#include "qw/config.h"

static char *path, *saved;

/* The fields that shape or compute the model survive a save and a load. */
static int same(const qw_config *a, const qw_config *b)
{
    return a->arch == b->arch && a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->intermediate_size == b->intermediate_size && a->num_hidden_layers == b->num_hidden_layers &&
           a->num_attention_heads == b->num_attention_heads && a->num_key_value_heads == b->num_key_value_heads &&
           a->head_dim == b->head_dim && a->max_position_embeddings == b->max_position_embeddings &&
           a->rms_norm_eps == b->rms_norm_eps && a->tie_word_embeddings == b->tie_word_embeddings &&
           a->rope_theta == b->rope_theta && a->rope_type == b->rope_type && a->rope_factor == b->rope_factor &&
           a->rope_original_max_position == b->rope_original_max_position &&
           a->rope_attention_factor == b->rope_attention_factor && a->yarn_beta_fast == b->yarn_beta_fast &&
           a->yarn_beta_slow == b->yarn_beta_slow && a->yarn_truncate == b->yarn_truncate &&
           a->num_experts == b->num_experts && a->num_experts_per_tok == b->num_experts_per_tok &&
           a->moe_intermediate_size == b->moe_intermediate_size && a->decoder_sparse_step == b->decoder_sparse_step &&
           a->norm_topk_prob == b->norm_topk_prob && a->n_mlp_only_layers == b->n_mlp_only_layers &&
           !memcmp(a->mlp_only_layers, b->mlp_only_layers, sizeof(int) * (size_t)a->n_mlp_only_layers) &&
           a->eos_token_id == b->eos_token_id && a->bos_token_id == b->bos_token_id &&
           a->pad_token_id == b->pad_token_id;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    path = fz_path("config.json");
    saved = fz_path("saved.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(path, data, size);
    qw_config c, back;
    int rc = qw_config_load(path, &c);
    fz_expect(rc, FZ_DATA, path);
    if (rc) return 0;
    int64_t total, active;
    qw_config_param_counts(&c, &total, &active);
    if (total < 0 || active < 0 || active > total) fz_fatal("parameter counts out of order", 0);
    for (int i = 0; i < c.num_hidden_layers; i++) qw_config_layer_is_moe(&c, i);
    if (strcmp(c.model_type, "qwen3") && strcmp(c.model_type, "qwen3_moe")) return 0;
    fz_expect(qw_config_save(&c, saved), 0, NULL);
    rc = qw_config_load(saved, &back);
    if (rc) fz_fatal("a config written by qw_config_save does not load", rc);
    if (!same(&c, &back)) fz_fatal("a config changed through qw_config_save and qw_config_load", 0);
    return 0;
}
