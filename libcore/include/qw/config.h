/* qw/config.h — model configuration: Hugging Face config.json for Qwen3
 * dense ("qwen3"), Qwen3-MoE ("qwen3_moe") and the text part of Qwen3-VL
 * ("qwen3_vl", "qwen3_vl_moe": nested text_config), in both key
 * generations (reference/qwen3.md §10: rope_theta/rope_scaling/num_experts
 * of transformers 4.5x and rope_parameters/num_local_experts of 5.x).
 *
 * Unknown model_type, a missing required field, or an unsupported setting
 * (use_sliding_window true, a rope_type other than default/yarn) is
 * QW_EXIT_DATA with a message naming the file and the key.
 */
#ifndef QW_CONFIG_H
#define QW_CONFIG_H

#include <stdint.h>

typedef enum { QW_ARCH_DENSE, QW_ARCH_MOE } qw_arch;
typedef enum { QW_ROPE_DEFAULT, QW_ROPE_YARN } qw_rope_type;

#define QW_CONFIG_MAX_LAYERS 512

typedef struct {
    char model_type[32];        /* as in the file: "qwen3", "qwen3_moe", … */
    qw_arch arch;

    int vocab_size;             /* V */
    int hidden_size;            /* H */
    int intermediate_size;      /* I: dense MLP width */
    int num_hidden_layers;      /* L */
    int num_attention_heads;    /* nh */
    int num_key_value_heads;    /* nkv */
    int head_dim;               /* d (default H/nh when absent) */
    int max_position_embeddings;
    double rms_norm_eps;
    double initializer_range;
    int tie_word_embeddings;
    int attention_bias;

    /* RoPE */
    double rope_theta;
    qw_rope_type rope_type;
    double rope_factor;                  /* yarn: factor */
    int rope_original_max_position;      /* yarn: original_max_position_embeddings */
    double rope_attention_factor;        /* yarn: 0 = derive from factor */
    double yarn_beta_fast, yarn_beta_slow;   /* defaults 32, 1 */
    double yarn_mscale, yarn_mscale_all_dim; /* 0 = absent */
    int yarn_truncate;                   /* default 1 */

    /* MoE (num_experts = 0 for dense) */
    int num_experts;            /* E */
    int num_experts_per_tok;    /* k */
    int moe_intermediate_size;  /* Ie */
    int decoder_sparse_step;
    int norm_topk_prob;
    double router_aux_loss_coef;
    int output_router_logits;
    int n_mlp_only_layers;
    int mlp_only_layers[QW_CONFIG_MAX_LAYERS];

    int bos_token_id, eos_token_id, pad_token_id;   /* -1 when absent */
    char torch_dtype[16];       /* "bfloat16", "float32" … ("" if absent) */
} qw_config;

int qw_config_load(const char *path, qw_config *c);   /* path: config.json or a model dir */
/* Parse from a JSON string; `name` is used in messages. */
int qw_config_parse(const char *json, const char *name, qw_config *c);
/* Write config.json in the Hub (transformers 4.5x) generation of keys. */
int qw_config_save(const qw_config *c, const char *path);
/* Layer i uses the MoE block (reference/qwen3.md §2 "Layer choice"). */
int qw_config_layer_is_moe(const qw_config *c, int layer);
/* Parameter counts: all, and active per token (MoE: k of E experts). */
void qw_config_param_counts(const qw_config *c, int64_t *total, int64_t *active);

#endif
