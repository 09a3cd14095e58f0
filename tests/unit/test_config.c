/* test_config.c — config.json: both key generations, VL nesting, defaults, errors, save. */
#include <unistd.h>

#include "qwtest.h"
#include "qw/cli.h"
#include "qw/config.h"

/* Qwen3-8B's published config.json (transformers 4.5x keys). */
static const char *qwen3_8b =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":151643,\"eos_token_id\":151645,\"head_dim\":128,\"hidden_act\":\"silu\",\"hidden_size\":4096,"
    "\"initializer_range\":0.02,\"intermediate_size\":12288,\"max_position_embeddings\":40960,\"max_window_layers\":36,"
    "\"model_type\":\"qwen3\",\"num_attention_heads\":32,\"num_hidden_layers\":36,\"num_key_value_heads\":8,"
    "\"rms_norm_eps\":1e-06,\"rope_scaling\":null,\"rope_theta\":1000000,\"sliding_window\":null,"
    "\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.51.0\",\"use_cache\":true,"
    "\"use_sliding_window\":false,\"vocab_size\":151936}";

/* A Qwen3-30B-A3B config as transformers 5.x saves it. */
static const char *moe_v5 =
    "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"bos_token_id\":151643,\"decoder_sparse_step\":1,\"dtype\":\"bfloat16\","
    "\"eos_token_id\":[151645,151643],\"head_dim\":128,\"hidden_size\":2048,\"intermediate_size\":6144,"
    "\"layer_types\":[\"full_attention\"],\"max_position_embeddings\":40960,\"mlp_only_layers\":[],"
    "\"model_type\":\"qwen3_moe\",\"moe_intermediate_size\":768,\"norm_topk_prob\":true,\"num_attention_heads\":32,"
    "\"num_experts_per_tok\":8,\"num_hidden_layers\":48,\"num_key_value_heads\":4,\"num_local_experts\":128,"
    "\"output_router_logits\":false,\"rms_norm_eps\":1e-06,\"rope_parameters\":{\"rope_theta\":1000000.0,"
    "\"rope_type\":\"yarn\",\"factor\":4.0,\"original_max_position_embeddings\":32768},\"router_aux_loss_coef\":0.001,"
    "\"tie_word_embeddings\":false,\"transformers_version\":\"5.17.0\",\"vocab_size\":151936}";

static int parse_fails(const char *json, const char *want)
{
    qw_config c;
    qw_error_clear();
    int rc = qw_config_parse(json, "cfg.json", &c);
    int ok = rc == QW_EXIT_DATA && strstr(qw_error_msg(), want) && strstr(qw_error_msg(), "'cfg.json'");
    if (!ok) fprintf(stderr, "  rc %d, message '%s', wanted '%s'\n", rc, qw_error_msg(), want);
    return ok;
}

TEST(hub_generation_dense)
{
    qw_config c;
    CHECK(qw_config_parse(qwen3_8b, "8b.json", &c) == 0);
    CHECK_STR(c.model_type, "qwen3");
    CHECK(c.arch == QW_ARCH_DENSE && c.num_experts == 0);
    CHECK(c.vocab_size == 151936 && c.hidden_size == 4096 && c.intermediate_size == 12288);
    CHECK(c.num_hidden_layers == 36 && c.num_attention_heads == 32 && c.num_key_value_heads == 8 && c.head_dim == 128);
    CHECK(c.max_position_embeddings == 40960 && c.rms_norm_eps == 1e-6 && c.initializer_range == 0.02);
    CHECK(!c.tie_word_embeddings && c.rope_theta == 1e6 && c.rope_type == QW_ROPE_DEFAULT);
    CHECK(c.bos_token_id == 151643 && c.eos_token_id == 151645 && c.pad_token_id == -1);
    CHECK_STR(c.torch_dtype, "bfloat16");
    CHECK(c.image_token_id == -1);
    int64_t total, active;
    qw_config_param_counts(&c, &total, &active);
    CHECK(total == active);
    CHECK(total > 8.18e9 && total < 8.2e9);   /* "8.2B" */
}

TEST(v5_generation_moe_yarn)
{
    qw_config c;
    CHECK(qw_config_parse(moe_v5, "moe.json", &c) == 0);
    CHECK(c.arch == QW_ARCH_MOE && c.num_experts == 128 && c.num_experts_per_tok == 8 && c.moe_intermediate_size == 768);
    CHECK(c.norm_topk_prob == 1 && c.decoder_sparse_step == 1 && c.n_mlp_only_layers == 0);
    CHECK(c.router_aux_loss_coef == 0.001 && c.output_router_logits == 0);
    CHECK(c.eos_token_id == 151645);
    CHECK_STR(c.torch_dtype, "bfloat16");
    CHECK(c.rope_type == QW_ROPE_YARN && c.rope_factor == 4.0 && c.rope_original_max_position == 32768);
    CHECK(c.rope_theta == 1e6 && c.yarn_beta_fast == 32 && c.yarn_beta_slow == 1 && c.yarn_truncate == 1);
    CHECK(c.rope_attention_factor == 0);
    int64_t total, active;
    qw_config_param_counts(&c, &total, &active);
    CHECK_MSG(total > 30.5e9 && total < 30.6e9, "%lld", (long long)total);     /* "30.5B" */
    CHECK_MSG(active > 3.3e9 && active < 3.4e9, "%lld", (long long)active);    /* "3.3B activated" */
    for (int i = 0; i < 48; i++) CHECK(qw_config_layer_is_moe(&c, i));
}

TEST(rope_variants)
{
    qw_config c;
    CHECK(qw_config_parse("{\"model_type\":\"qwen3\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,"
                          "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"max_position_embeddings\":256,"
                          "\"rope_theta\":5e5,\"rope_scaling\":{\"type\":\"yarn\",\"original_max_position_embeddings\":64,"
                          "\"beta_fast\":16,\"truncate\":false,\"attention_factor\":1.5}}", "y", &c) == 0);
    CHECK(c.rope_type == QW_ROPE_YARN && c.rope_factor == 4.0);   /* 256 / 64 */
    CHECK(c.rope_theta == 5e5 && c.yarn_beta_fast == 16 && !c.yarn_truncate && c.rope_attention_factor == 1.5);
    CHECK(c.head_dim == 128 && c.num_key_value_heads == 2);        /* qwen3 defaults */
    /* rope_parameters beats rope_scaling; per-layer-type dict */
    CHECK(qw_config_parse("{\"model_type\":\"qwen3\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,"
                          "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"rope_scaling\":{\"rope_type\":\"linear\"},"
                          "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\",\"rope_theta\":7.0}}}", "y",
                          &c) == 0);
    CHECK(c.rope_type == QW_ROPE_DEFAULT && c.rope_theta == 7.0 && c.max_position_embeddings == 32768);
    CHECK(qw_config_parse("{\"model_type\":\"qwen3\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,"
                          "\"num_hidden_layers\":1,\"num_attention_heads\":2}", "y", &c) == 0);
    CHECK(c.rope_theta == 10000.0);
}

TEST(vl_nesting)
{
    const char *vl =
        "{\"model_type\":\"qwen3_vl\",\"image_token_id\":151655,\"video_token_id\":151656,\"vision_start_token_id\":151652,"
        "\"vision_end_token_id\":151653,\"tie_word_embeddings\":true,\"vision_config\":{\"depth\":24},"
        "\"text_config\":{\"model_type\":\"qwen3_vl_text\",\"vocab_size\":151936,\"hidden_size\":2048,"
        "\"intermediate_size\":6144,\"num_hidden_layers\":28,\"num_attention_heads\":16,\"num_key_value_heads\":8,"
        "\"head_dim\":128,\"bos_token_id\":151643,\"eos_token_id\":151645,\"max_position_embeddings\":262144,"
        "\"tie_word_embeddings\":false,\"dtype\":\"bfloat16\",\"rope_scaling\":{\"mrope_interleaved\":true,"
        "\"mrope_section\":[24,20,20],\"rope_type\":\"default\"},\"rope_theta\":5000000}}";
    qw_config c;
    CHECK(qw_config_parse(vl, "vl.json", &c) == 0);
    CHECK_STR(c.model_type, "qwen3_vl");
    CHECK(c.arch == QW_ARCH_DENSE && c.hidden_size == 2048 && c.num_hidden_layers == 28);
    CHECK(c.tie_word_embeddings == 1);     /* the top level governs tying */
    CHECK(c.image_token_id == 151655 && c.video_token_id == 151656);
    CHECK(c.vision_start_token_id == 151652 && c.vision_end_token_id == 151653);
    CHECK(c.bos_token_id == 151643 && c.eos_token_id == 151645);
    CHECK(c.rope_theta == 5e6 && c.rope_type == QW_ROPE_DEFAULT && c.mrope_interleaved);
    CHECK(c.mrope_section[0] == 24 && c.mrope_section[1] == 20 && c.mrope_section[2] == 20);
    CHECK_STR(c.torch_dtype, "bfloat16");
    CHECK(parse_fails("{\"model_type\":\"qwen3_vl\",\"text_config\":{\"vocab_size\":5}}", "missing key 'text_config.hidden_size'"));
    CHECK(parse_fails("{\"model_type\":\"qwen3_vl\"}", "missing key 'text_config'"));
    CHECK(parse_fails("{\"model_type\":\"qwen3_vl\",\"text_config\":{\"vocab_size\":\"x\"}}", "key 'text_config.vocab_size': expected an integer"));

    const char *vlmoe =
        "{\"model_type\":\"qwen3_vl_moe\",\"text_config\":{\"vocab_size\":151936,\"hidden_size\":2048,"
        "\"num_hidden_layers\":48,\"num_attention_heads\":32,\"num_key_value_heads\":4,\"num_experts\":128,"
        "\"num_experts_per_tok\":8,\"moe_intermediate_size\":768,\"intermediate_size\":6144}}";
    CHECK(qw_config_parse(vlmoe, "vlm.json", &c) == 0);
    CHECK(c.arch == QW_ARCH_MOE && c.num_experts == 128 && c.norm_topk_prob == 1);
    CHECK(c.head_dim == 64 && c.rope_theta == 500000.0 && c.max_position_embeddings == 128000);
    CHECK(c.image_token_id == -1 && !c.tie_word_embeddings);
}

TEST(moe_layer_choice_and_defaults)
{
    qw_config c;
    CHECK(qw_config_parse("{\"model_type\":\"qwen3_moe\",\"vocab_size\":16,\"hidden_size\":8,\"num_hidden_layers\":6,"
                          "\"num_attention_heads\":2,\"num_experts\":4,\"num_experts_per_tok\":2,"
                          "\"moe_intermediate_size\":4,\"intermediate_size\":12,\"decoder_sparse_step\":2,"
                          "\"mlp_only_layers\":[3]}", "m", &c) == 0);
    CHECK(c.head_dim == 4 && c.norm_topk_prob == 0 && c.router_aux_loss_coef == 0.001);
    int moe[6];
    for (int i = 0; i < 6; i++) moe[i] = qw_config_layer_is_moe(&c, i);
    CHECK(!moe[0] && moe[1] && !moe[2] && !moe[3] && !moe[4] && moe[5]);
    int64_t total, active;
    qw_config_param_counts(&c, &total, &active);
    /* embed+head 2·16·8 + norm 8; attention per layer 2·8 + 2·(2·4·8) + 2·(2·4·8) + 2·4 = 280;
       dense MLP 3·12·8 = 288; MoE: router 4·8 + experts 4·3·4·8 = 416 (active 2 experts: 32+192) */
    CHECK(total == 256 + 8 + 6 * 280 + 4 * 288 + 2 * 416);
    CHECK(active == 256 + 8 + 6 * 280 + 4 * 288 + 2 * 224);
    /* all layers sparse: intermediate_size not needed */
    CHECK(qw_config_parse("{\"model_type\":\"qwen3_moe\",\"vocab_size\":16,\"hidden_size\":8,\"num_hidden_layers\":2,"
                          "\"num_attention_heads\":2,\"num_local_experts\":4,\"num_experts_per_tok\":1,"
                          "\"moe_intermediate_size\":4}", "m", &c) == 0);
    CHECK(c.num_experts == 4 && c.intermediate_size == 0);
}

TEST(errors)
{
    CHECK(parse_fails("{\"model_type\":", "not valid JSON"));
    CHECK(parse_fails("[1]", "not a JSON object"));
    CHECK(parse_fails("{}", "missing key 'model_type'"));
    CHECK(parse_fails("{\"model_type\":\"llama\"}", "key 'model_type': 'llama' is not a Qwen3 model"));
    CHECK(parse_fails("{\"model_type\":\"qwen3\",\"hidden_size\":8}", "missing key 'vocab_size'"));
    const char *base = "{\"model_type\":\"qwen3\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,"
                       "\"num_hidden_layers\":2,\"num_attention_heads\":4,";
    char j[1024];
#define WITH(extra) (snprintf(j, sizeof j, "%s%s}", base, extra), j)
    CHECK(parse_fails(WITH("\"use_sliding_window\":true"), "key 'use_sliding_window'"));
    CHECK(parse_fails(WITH("\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2}"), "key 'rope_scaling.rope_type': 'linear'"));
    CHECK(parse_fails(WITH("\"rope_parameters\":{\"rope_type\":\"yarn\",\"factor\":-1}"), "key 'rope_parameters.factor'"));
    CHECK(parse_fails(WITH("\"num_key_value_heads\":3"), "key 'num_key_value_heads': 3 does not divide"));
    CHECK(parse_fails(WITH("\"num_key_value_heads\":0"), "key 'num_key_value_heads': 0 is below 1"));
    CHECK(parse_fails(WITH("\"head_dim\":7"), "key 'head_dim': 7 is odd"));
    CHECK(parse_fails(WITH("\"hidden_act\":\"gelu\""), "key 'hidden_act'"));
    CHECK(parse_fails(WITH("\"attention_bias\":true"), "key 'attention_bias'"));
    CHECK(parse_fails(WITH("\"tie_word_embeddings\":1"), "key 'tie_word_embeddings': expected true or false"));
    CHECK(parse_fails(WITH("\"rms_norm_eps\":\"small\""), "key 'rms_norm_eps': expected a finite number"));
    /* infinities (1e999) loaded and were saved as the invalid JSON "inf" (found by fuzzing) */
    CHECK(parse_fails(WITH("\"rms_norm_eps\":1e999"), "key 'rms_norm_eps': expected a finite number"));
    CHECK(parse_fails(WITH("\"rope_theta\":-1e999"), "key 'rope_theta': expected a finite number"));
    CHECK(parse_fails(WITH("\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":1e999}"),
                      "key 'rope_scaling.factor': expected a finite positive number"));
    CHECK(parse_fails(WITH("\"eos_token_id\":-5"), "key 'eos_token_id'"));
    CHECK(parse_fails("{\"model_type\":\"qwen3\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,"
                      "\"num_attention_heads\":2}", "missing key 'intermediate_size'"));
    const char *mbase = "{\"model_type\":\"qwen3_moe\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,"
                        "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"moe_intermediate_size\":4,";
    snprintf(j, sizeof j, "%s\"num_experts_per_tok\":2}", mbase);
    CHECK(parse_fails(j, "missing key 'num_local_experts'"));
    snprintf(j, sizeof j, "%s\"num_experts\":2,\"num_experts_per_tok\":3}", mbase);
    CHECK(parse_fails(j, "key 'num_experts_per_tok': 3 is more than the 2 experts"));
    snprintf(j, sizeof j, "%s\"num_experts\":2,\"num_experts_per_tok\":1,\"mlp_only_layers\":[2]}", mbase);
    CHECK(parse_fails(j, "key 'mlp_only_layers'"));
    snprintf(j, sizeof j, "%s\"num_experts\":2,\"num_experts_per_tok\":1,\"decoder_sparse_step\":0}", mbase);
    CHECK(parse_fails(j, "key 'decoder_sparse_step'"));
    /* head_dim defaults to H/nh for MoE: 8/16 is 0 (found by fuzzing: the config loaded, and did not load back) */
    snprintf(j, sizeof j, "%s\"num_experts\":2,\"num_experts_per_tok\":1,\"num_attention_heads\":16}",
             "{\"model_type\":\"qwen3_moe\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":2,"
             "\"moe_intermediate_size\":4,");
    CHECK(parse_fails(j, "key 'head_dim' is missing and hidden_size 8 / num_attention_heads 16 is 0, below 2"));
    qw_config c;
    CHECK(qw_config_load("/nonexistent/dir/config.json", &c) == QW_EXIT_FAIL && strstr(qw_error_msg(), "/nonexistent"));
#undef WITH
}

/* Values whose products overflow what the parameter layout and the model
 * index (an int, or 64-bit bytes): bad data naming the field. */
TEST(absurd_sizes)
{
    const char *base = "{\"model_type\":\"qwen3\",\"vocab_size\":10,\"num_hidden_layers\":2,\"num_key_value_heads\":1,";
    char j[1024];
#define WITH(extra) (snprintf(j, sizeof j, "%s%s}", base, extra), j)
    CHECK(parse_fails(WITH("\"hidden_size\":8,\"intermediate_size\":8,\"num_attention_heads\":4,\"head_dim\":1073741824"),
                      "key 'head_dim': 1073741824 × 4 attention heads is more than 2147483647"));
    CHECK(parse_fails(WITH("\"hidden_size\":2000000000,\"intermediate_size\":2000000000,\"num_attention_heads\":1,"
                           "\"head_dim\":2"), "key 'intermediate_size': the parameters' bytes overflow 64 bits"));
    CHECK(parse_fails(WITH("\"hidden_size\":2000000000,\"intermediate_size\":8,\"num_attention_heads\":1,"
                           "\"head_dim\":1000000000"), "key 'hidden_size': the parameters' bytes overflow 64 bits"));
    /* fits: the largest config values seen on the Hub stay accepted */
    qw_config c;
    CHECK_MSG(qw_config_parse(WITH("\"vocab_size\":151936,\"hidden_size\":8192,\"intermediate_size\":29568,"
                                   "\"num_attention_heads\":64,\"head_dim\":128"), "big", &c) == 0, "%s", qw_error_msg());
#undef WITH
    const char *mbase = "{\"model_type\":\"qwen3_moe\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,"
                        "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_experts_per_tok\":1,";
    snprintf(j, sizeof j, "%s\"num_experts\":1000000000,\"moe_intermediate_size\":4}", mbase);
    CHECK(parse_fails(j, "key 'num_experts': 1000000000 experts in 2 layers are more tensors than 2147483647"));
    CHECK(parse_fails("{\"model_type\":\"qwen3_moe\",\"vocab_size\":10,\"hidden_size\":2000000000,\"head_dim\":2,"
                      "\"intermediate_size\":8,\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_experts_per_tok\":1,"
                      "\"num_experts\":100,\"moe_intermediate_size\":2000000000}",
                      "key 'moe_intermediate_size': the parameters' bytes overflow 64 bits"));
}

static int same(const qw_config *a, const qw_config *b)
{
    return !strcmp(a->model_type, b->model_type) && a->arch == b->arch && a->vocab_size == b->vocab_size &&
           a->hidden_size == b->hidden_size && a->intermediate_size == b->intermediate_size &&
           a->num_hidden_layers == b->num_hidden_layers && a->num_attention_heads == b->num_attention_heads &&
           a->num_key_value_heads == b->num_key_value_heads && a->head_dim == b->head_dim &&
           a->max_position_embeddings == b->max_position_embeddings && a->rms_norm_eps == b->rms_norm_eps &&
           a->initializer_range == b->initializer_range && a->tie_word_embeddings == b->tie_word_embeddings &&
           a->rope_theta == b->rope_theta && a->rope_type == b->rope_type && a->rope_factor == b->rope_factor &&
           a->rope_original_max_position == b->rope_original_max_position &&
           a->yarn_beta_fast == b->yarn_beta_fast && a->yarn_truncate == b->yarn_truncate &&
           a->num_experts == b->num_experts && a->num_experts_per_tok == b->num_experts_per_tok &&
           a->moe_intermediate_size == b->moe_intermediate_size && a->decoder_sparse_step == b->decoder_sparse_step &&
           a->norm_topk_prob == b->norm_topk_prob && a->router_aux_loss_coef == b->router_aux_loss_coef &&
           a->output_router_logits == b->output_router_logits && a->n_mlp_only_layers == b->n_mlp_only_layers &&
           !memcmp(a->mlp_only_layers, b->mlp_only_layers, a->n_mlp_only_layers * sizeof(int)) &&
           a->bos_token_id == b->bos_token_id && a->eos_token_id == b->eos_token_id &&
           a->pad_token_id == b->pad_token_id && a->score_head == b->score_head;
}

/* A reward model: Qwen3ForSequenceClassification with one label (id2label,
 * or num_labels); other label counts (transformers' default is 2) refused;
 * saved back as transformers writes one label. */
TEST(reward_model_head)
{
    char json[4096];
    qw_config c, d;
    const char *arch = "\"architectures\":[\"Qwen3ForCausalLM\"]";
    const char *rest = strstr(qwen3_8b, arch) + strlen(arch);
    CHECK(qw_config_parse(qwen3_8b, "lm", &c) == 0 && c.score_head == 0);
    snprintf(json, sizeof json, "{\"architectures\":[\"Qwen3ForSequenceClassification\"],\"id2label\":{\"0\":\"LABEL_0\"}%s", rest);
    CHECK(qw_config_parse(json, "rm", &c) == 0 && c.score_head == 1);
    snprintf(json, sizeof json, "{\"architectures\":[\"Qwen3ForSequenceClassification\"],\"num_labels\":1%s", rest);
    CHECK(qw_config_parse(json, "rm", &c) == 0 && c.score_head == 1);
    snprintf(json, sizeof json, "{\"architectures\":[\"Qwen3ForSequenceClassification\"]%s", rest);
    CHECK(parse_fails(json, "2 labels (the default without id2label)"));
    snprintf(json, sizeof json, "{\"architectures\":[\"Qwen3ForSequenceClassification\"],"
             "\"id2label\":{\"0\":\"A\",\"1\":\"B\",\"2\":\"C\"}%s", rest);
    CHECK(parse_fails(json, "key 'id2label'") && strstr(qw_error_msg(), "3 labels"));
    int64_t t0, t1, a;
    qw_config lm;
    CHECK(qw_config_parse(qwen3_8b, "lm", &lm) == 0);
    qw_config_param_counts(&lm, &t0, &a);
    qw_config_param_counts(&c, &t1, &a);
    CHECK(t0 - t1 == (int64_t)lm.vocab_size * lm.hidden_size - lm.hidden_size);   /* an LM head less, a score head more */
    char dir[] = "/tmp/qw-test-config-rm.XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0); return; }
    CHECK(qw_config_save(&c, dir) == 0 && qw_config_load(dir, &d) == 0 && same(&c, &d));
    char p[256], text[8192] = {0};
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "r");
    size_t k = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    CHECK(k > 0 && strstr(text, "\"Qwen3ForSequenceClassification\"") && strstr(text, "\"LABEL_0\"") &&
          strstr(text, "\"label2id\""));
    unlink(p);
    rmdir(dir);
}

TEST(save_round_trip)
{
    char dir[] = "/tmp/qw-test-config.XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0); return; }
    const char *srcs[] = {qwen3_8b, moe_v5};
    for (int i = 0; i < 2; i++) {
        qw_config a, b;
        CHECK(qw_config_parse(srcs[i], "src", &a) == 0);
        if (i) a.mlp_only_layers[a.n_mlp_only_layers++] = 5;
        CHECK(qw_config_save(&a, dir) == 0);     /* a directory: dir/config.json */
        CHECK(qw_config_load(dir, &b) == 0);
        CHECK(same(&a, &b));
        CHECK_STR(b.torch_dtype, "bfloat16");
        char p[256], text[8192] = {0};
        snprintf(p, sizeof p, "%s/config.json", dir);
        FILE *f = fopen(p, "r");
        size_t k = f ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f) fclose(f);
        CHECK(k > 0 && strstr(text, "\"rope_theta\":\t1000000.0") && strstr(text, "\"transformers_version\":\t\"4.51.0\""));
        CHECK(strstr(text, i ? "\"Qwen3MoeForCausalLM\"" : "\"Qwen3ForCausalLM\""));
        CHECK(!i || (strstr(text, "\"num_experts\":\t128") && strstr(text, "\"factor\":\t4.0") &&
                     strstr(text, "\"router_aux_loss_coef\":\t0.001") && !strstr(text, "rope_parameters")));
        CHECK(i || strstr(text, "\"rope_scaling\":\tnull"));
        CHECK(strstr(text, "\"rms_norm_eps\":\t1e-06"));
        unlink(p);
    }
    /* Qwen3-VL: both golden generations written back in the nested Hub form */
    const char *vls[] = {"tests/golden/vl/model/config.json", "tests/golden/vl/model_v5/config.json",
                         "tests/golden/vl_moe/model_v5/config.json"};
    for (int i = 0; i < 3; i++) {
        qw_config a, b;
        CHECK(qw_config_load(qwtest_path(vls[i]), &a) == 0);
        CHECK(a.vision.depth == 3 && a.vision.n_deepstack == 2 && a.mrope_section[0] == 4 && a.mrope_interleaved);
        CHECK(qw_config_save(&a, dir) == 0);
        CHECK(qw_config_load(dir, &b) == 0);
        CHECK(same(&a, &b) && !memcmp(&a.vision, &b.vision, sizeof a.vision));
        CHECK(b.image_token_id == 252 && b.vision_start_token_id == 250 && b.mrope_section[2] == 2);
        char p[256];
        snprintf(p, sizeof p, "%s/config.json", dir);
        unlink(p);
    }
    rmdir(dir);
}

TEST(golden_configs_both_generations)
{
    qw_config hub, v5, y;
    CHECK(qw_config_load(qwtest_path("tests/golden/moe/model"), &hub) == 0);
    CHECK(qw_config_load(qwtest_path("tests/golden/moe/model_fused/config.json"), &v5) == 0);
    CHECK(same(&hub, &v5));
    CHECK(hub.num_experts == 8 && hub.n_mlp_only_layers == 1 && hub.mlp_only_layers[0] == 1);
    CHECK(qw_config_layer_is_moe(&hub, 0) && !qw_config_layer_is_moe(&hub, 1) && qw_config_layer_is_moe(&hub, 2));
    CHECK(hub.output_router_logits && hub.norm_topk_prob && hub.router_aux_loss_coef == 0.01);
    CHECK(qw_config_load(qwtest_path("tests/golden/dense_yarn/model/config.json"), &y) == 0);
    CHECK(y.rope_type == QW_ROPE_YARN && y.rope_factor == 4 && y.rope_original_max_position == 64);
    CHECK(y.head_dim * y.num_attention_heads != y.hidden_size);
}

int main(void)
{
    PLAN(10);
    RUN(hub_generation_dense);
    RUN(v5_generation_moe_yarn);
    RUN(rope_variants);
    RUN(vl_nesting);
    RUN(moe_layer_choice_and_defaults);
    RUN(errors);
    RUN(absurd_sizes);
    RUN(save_round_trip);
    RUN(golden_configs_both_generations);
    RUN(reward_model_head);
    return qwtest_finish();
}
