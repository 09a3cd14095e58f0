/* qw/config.h — model configuration: Hugging Face config.json for Qwen3
 * dense ("qwen3"), Qwen3-MoE ("qwen3_moe") and the text part of Qwen3-VL
 * ("qwen3_vl", "qwen3_vl_moe": nested text_config), in both key
 * generations (doc/model.md §4: rope_theta/rope_scaling/num_experts
 * of transformers 4.5x and rope_parameters/num_local_experts of 5.x).
 *
 * Unknown model_type, a missing required field, or an unsupported setting
 * (use_sliding_window true, a rope_type other than default/yarn) is
 * QW_EXIT_DATA with a message naming the file and the key.
 *
 * Required: model_type, vocab_size, hidden_size, num_hidden_layers,
 * num_attention_heads; intermediate_size when some layer is dense; for MoE
 * num_experts (or num_local_experts), num_experts_per_tok,
 * moe_intermediate_size.  Everything else takes the default of the HF
 * config class of that model_type:
 *   head_dim            qwen3, qwen3_vl: 128; qwen3_moe, qwen3_vl_moe: H/nh
 *   num_key_value_heads nh
 *   rope_theta          10000 (qwen3, qwen3_moe), 500000 (qwen3_vl*)
 *   max_position_embeddings 32768 (qwen3, qwen3_moe), 128000 (qwen3_vl*)
 *   rms_norm_eps 1e-6, initializer_range 0.02, tie_word_embeddings false,
 *   decoder_sparse_step 1, mlp_only_layers [], norm_topk_prob false
 *   (qwen3_vl_moe always renormalises: 1), router_aux_loss_coef 0.001,
 *   output_router_logits false; yarn: factor max_position_embeddings /
 *   original_max_position_embeddings, original_max_position_embeddings
 *   max_position_embeddings, beta_fast 32, beta_slow 1, truncate true.
 * A JSON null counts as absent.  RoPE: rope_parameters (5.x; a per-layer-
 * type dict uses its "full_attention" entry) wins over rope_scaling and a
 * top-level rope_theta (4.5x).  For qwen3_vl*, the text keys are read from
 * text_config (messages say "text_config.KEY"), falling back to the top
 * level; tie_word_embeddings, torch_dtype and the vision token ids are read
 * from the top level first.  eos_token_id may be a list (its first id).
 * Qwen3-VL also reads vision_config (qw_config.vision; messages say
 * "vision_config.KEY"): hidden_act must be gelu_pytorch_tanh, hidden_size a
 * multiple of num_heads with an even head size divisible by 4 (2-D RoPE),
 * num_position_embeddings a perfect square, every deepstack index a block
 * below depth (at most 8, and no more than the decoder has layers); the
 * text mrope_section must sum to head_dim/2.
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
    /* A reward model: architectures ["Qwen3ForSequenceClassification"]
     * with one label (id2label of one entry, or num_labels 1): the
     * backbone, then `score.weight` [1,H] instead of the LM head
     * (qw/params.h, qw/rm.h).  0 for a causal LM. */
    int score_head;
    char torch_dtype[16];       /* "bfloat16", "float32" … ("" if absent) */

    /* Qwen3-VL only (top level of config.json; -1 / 0 when absent) */
    int image_token_id, video_token_id, vision_start_token_id, vision_end_token_id;
    int mrope_section[3];       /* rope mrope_section, e.g. 24 20 20 */
    int mrope_interleaved;
    /* Qwen3-VL vision tower (vision_config; depth 0 for text-only models
     * and for a qwen3_vl* config without vision_config: its language model
     * alone).  Keys absent from vision_config take the defaults of
     * transformers' Qwen3VLVisionConfig. */
    struct {
        int depth, hidden_size, num_heads, intermediate_size, out_hidden_size;
        int in_channels, patch_size, temporal_patch_size, spatial_merge_size;
        int num_position_embeddings;       /* a square grid: its side is the square root */
        int n_deepstack, deepstack[8];     /* deepstack_visual_indexes: blocks whose output feeds decoder layer j */
        double rope_theta;                 /* 2-D RoPE base, 10000 */
        double initializer_range;
    } vision;
} qw_config;

int qw_config_load(const char *path, qw_config *c);   /* path: config.json or a model dir */
/* Parse from a JSON string; `name` is used in messages. */
int qw_config_parse(const char *json, const char *name, qw_config *c);
/* Write config.json in the Hub (transformers 4.5x) generation of keys
 * (Qwen3-VL: the nested form of the published checkpoints: top-level
 * architectures, token ids, tie_word_embeddings; text_config with
 * rope_theta and rope_scaling {rope_type, mrope_section,
 * mrope_interleaved}; vision_config):
 * architectures ["Qwen3ForCausalLM"] or ["Qwen3MoeForCausalLM"] (with
 * score_head: ["Qwen3ForSequenceClassification"] or
 * ["Qwen3MoeForSequenceClassification"] and id2label {"0": "LABEL_0"},
 * label2id {"LABEL_0": 0}, as transformers writes one label), rope_theta,
 * rope_scaling (null, or the yarn object), num_experts …, keys sorted,
 * "transformers_version": "4.51.0" (the generation the keys belong to),
 * torch_dtype when set.  path: a file, or an existing directory (then
 * path/config.json).  Atomic (qw/st.h). */
int qw_config_save(const qw_config *c, const char *path);
/* Layer i uses the MoE block (doc/model.md §3 "Which layers"). */
int qw_config_layer_is_moe(const qw_config *c, int layer);
/* Parameter counts: all, and active per token (MoE: k of E experts; the
 * router, attention, norms, embedding and LM head count fully; a tied LM
 * head counts once; a reward model counts its score head, H, instead; a
 * vision tower counts fully). */
void qw_config_param_counts(const qw_config *c, int64_t *total, int64_t *active);

#endif
