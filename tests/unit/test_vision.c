/* test_vision.c — Qwen3-VL's position ids (get_rope_index) on hand-made
 * sequences with the values worked out by hand, the interleaved MRoPE
 * angle table, the vision_config keys and the vision tower's input
 * checks.  The tower's numbers are checked against transformers by
 * tests/tools/test_golden.sh (fixtures vl, vl_moe). */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/mrope.h"
#include "qw/params.h"
#include "qw/vision.h"

static qw_config vl_cfg(const char *vision)
{
    qw_config c;
    char j[1024];
    snprintf(j, sizeof j,
             "{\"model_type\":\"qwen3_vl\",\"image_token_id\":9,\"vision_start_token_id\":7,\"vision_end_token_id\":8,"
             "\"text_config\":{\"vocab_size\":16,\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":2,\"head_dim\":8,\"rope_scaling\":{\"rope_type\":\"default\",\"mrope_section\":[2,1,1],"
             "\"mrope_interleaved\":true}}%s%s}", vision ? ",\"vision_config\":" : "", vision ? vision : "");
    if (qw_config_parse(j, "vl", &c)) fprintf(stderr, "%s\n", qw_error_msg());
    return c;
}

static const char *tiny_vision = "{\"depth\":2,\"hidden_size\":8,\"num_heads\":2,\"intermediate_size\":8,"
                                 "\"out_hidden_size\":8,\"num_position_embeddings\":16,\"deepstack_visual_indexes\":[0]}";

/* text, image (grid 1×4×4: 2×2 tokens), text, image (1×2×4: 1×2), text in
 * row 0; text, image (1×2×4), text in row 1 */
TEST(rope_index_by_hand)
{
    qw_config c = vl_cfg(NULL);
    int32_t ids[28] = {1, 2, 7, 9, 9, 9, 9, 8, 3, 7, 9, 9, 8, 4,
                       5, 7, 9, 9, 8, 6, 1, 1, 1, 1, 1, 1, 1, 1};
    int32_t thw[9] = {1, 4, 4, 1, 2, 4, 1, 2, 4}, pos[3 * 28];
    CHECK(qw_rope_index(&c, ids, 2, 14, thw, 3, "t", pos) == 0);
    static const int32_t want[3][28] = {
        {0, 1, 2, 3, 3, 3, 3, 5, 6, 7, 8, 8, 10, 11, 0, 1, 2, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13},
        {0, 1, 2, 3, 3, 4, 4, 5, 6, 7, 8, 8, 10, 11, 0, 1, 2, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13},
        {0, 1, 2, 3, 4, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13},
    };
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < 28; i++) CHECK_MSG(pos[a * 28 + i] == want[a][i], "axis %d token %d: %d", a, i, pos[a * 28 + i]);
    /* a video-like grid of 2 frames: t counts frames */
    int32_t ids2[6] = {1, 9, 9, 9, 9, 2}, thw2[3] = {2, 2, 4}, p2[18];
    CHECK(qw_rope_index(&c, ids2, 1, 6, thw2, 1, "t", p2) == 0);
    static const int32_t w2[3][6] = {{0, 1, 1, 2, 2, 3}, {0, 1, 1, 1, 1, 3}, {0, 1, 2, 1, 2, 3}};
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < 6; i++) CHECK(p2[a * 6 + i] == w2[a][i]);
    /* without images: (i, i, i) */
    int32_t ids3[4] = {1, 2, 3, 4}, p3[12];
    CHECK(qw_rope_index(&c, ids3, 1, 4, NULL, 0, "t", p3) == 0);
    for (int i = 0; i < 12; i++) CHECK(p3[i] == i % 4);
}

/* two packed documents in a row (seg 1, 1, 1, 1, 2, 2, 2, 2): the second
 * starts again at 0, as it would alone; a pad run stops at a document's end */
TEST(rope_index_documents)
{
    qw_config c = vl_cfg(NULL);
    int32_t ids[8] = {1, 9, 9, 2, 3, 9, 9, 4}, seg[8] = {1, 1, 1, 1, 2, 2, 2, 2}, thw[6] = {1, 2, 4, 1, 2, 4}, pos[24];
    CHECK(qw_rope_index_docs(&c, ids, seg, 1, 8, thw, 2, "t", pos) == 0);
    static const int32_t want[3][8] = {{0, 1, 1, 3, 0, 1, 1, 3}, {0, 1, 1, 3, 0, 1, 1, 3}, {0, 1, 2, 3, 0, 1, 2, 3}};
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < 8; i++) CHECK_MSG(pos[a * 8 + i] == want[a][i], "axis %d token %d: %d", a, i, pos[a * 8 + i]);
    int32_t ids2[6] = {1, 9, 9, 9, 9, 2}, seg2[6] = {1, 1, 1, 2, 2, 2}, thw2[3] = {1, 2, 8};
    CHECK(qw_rope_index_docs(&c, ids2, seg2, 1, 6, thw2, 1, "t", pos) == QW_EXIT_DATA &&
          strstr(qw_error_msg(), "2 image pad tokens"));
}

TEST(rope_index_errors)
{
    qw_config c = vl_cfg(NULL);
    int32_t ids[6] = {1, 9, 9, 9, 2, 3}, thw[6] = {1, 4, 4, 1, 2, 4}, pos[18];
    CHECK(qw_rope_index(&c, ids, 1, 6, thw, 1, "in", pos) == QW_EXIT_DATA &&
          strstr(qw_error_msg(), "3 image pad tokens, but image 0"));
    int32_t ok[6] = {1, 9, 9, 9, 9, 3};
    CHECK(qw_rope_index(&c, ok, 1, 6, thw, 2, "in", pos) == QW_EXIT_DATA && strstr(qw_error_msg(), "2 images"));
    CHECK(qw_rope_index(&c, ok, 1, 6, thw, 0, "in", pos) == QW_EXIT_DATA && strstr(qw_error_msg(), "used up"));
}

TEST(mrope_table_axes)
{
    qw_config c = vl_cfg(NULL);
    int32_t pos3[3] = {1, 2, 3};   /* one token: t 1, h 2, w 3 */
    float inv[4] = {1, 0.5f, 0.25f, 0.125f}, cs[4], sn[4];
    qw_mrope_table(&c, pos3, 1, inv, 1, cs, sn);
    float ang[4] = {1, 1, 0.75f, 0.125f};   /* j0 t, j1 h, j2 w, j3 t (interleaved, sections 2,1,1) */
    for (int j = 0; j < 4; j++) {
        CHECK_NEAR(cs[j], cosf(ang[j]), 1e-7);
        CHECK_NEAR(sn[j], sinf(ang[j]), 1e-7);
    }
    c.mrope_interleaved = 0;
    qw_mrope_table(&c, pos3, 1, inv, 2, cs, sn);
    float ang2[4] = {1, 0.5f, 0.5f, 0.375f};   /* j0 j1 t, j2 h, j3 w */
    for (int j = 0; j < 4; j++) CHECK_NEAR(cs[j], 2 * cosf(ang2[j]), 1e-6);
}

TEST(vision_config)
{
    qw_config c = vl_cfg(tiny_vision);
    CHECK(c.vision.depth == 2 && c.vision.hidden_size == 8 && c.vision.num_heads == 2 && c.vision.patch_size == 16);
    CHECK(c.vision.n_deepstack == 1 && c.vision.deepstack[0] == 0 && c.vision.rope_theta == 10000);
    qw_config d = vl_cfg(NULL);
    CHECK(d.vision.depth == 0);
    const char *bad[][2] = {
        {"{\"num_position_embeddings\":15}", "is not a square"},
        {"{\"hidden_act\":\"gelu\"}", "only gelu_pytorch_tanh"},
        {"{\"hidden_size\":12,\"num_heads\":2}", "multiple of 4"},
        {"{\"depth\":2,\"deepstack_visual_indexes\":[2]}", "deepstack_visual_indexes"},
        {"{\"depth\":4,\"deepstack_visual_indexes\":[0,1,2]}", "deepstack_visual_indexes"},   /* 3 > 2 layers */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char j[1024];
        snprintf(j, sizeof j,
                 "{\"model_type\":\"qwen3_vl\",\"text_config\":{\"vocab_size\":16,\"hidden_size\":8,\"intermediate_size\":8,"
                 "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"head_dim\":8},\"vision_config\":%s}", bad[i][0]);
        qw_config x;
        int rc = qw_config_parse(j, "vl", &x);
        CHECK_MSG(rc == QW_EXIT_DATA && strstr(qw_error_msg(), bad[i][1]), "%s: %s", bad[i][0], qw_error_msg());
    }
}

TEST(vision_layout_and_grids)
{
    qw_config c = vl_cfg(tiny_vision);
    qw_params P;
    CHECK(qw_params_init(&P, &c) == 0);
    const qw_param *pe = qw_params_find(&P, "model.visual.patch_embed.proj.weight");
    CHECK(pe && pe->ndim == 5 && pe->shape[0] == 8 && pe->shape[1] == 3 && pe->shape[2] == 2 && pe->shape[4] == 16);
    CHECK(qw_params_find(&P, "model.visual.deepstack_merger_list.0.norm.weight") &&
          !qw_params_find(&P, "model.visual.deepstack_merger_list.1.norm.weight"));
    CHECK(qw_params_find(&P, "model.visual.merger.linear_fc1.weight")->shape[0] == 32);
    int64_t sum = 0, total, active;
    for (int i = 0; i < P.n; i++) sum += P.p[i].numel;
    qw_config_param_counts(&c, &total, &active);
    CHECK_MSG(total == sum && active == sum, "counted %lld, layout %lld", (long long)total, (long long)sum);
    qw_params_init_random(&P, 3);
    CHECK(qw_params_ptr(&P, qw_params_find(&P, "model.visual.blocks.1.norm2.weight"))[0] == 1.0f);
    CHECK(qw_params_ptr(&P, qw_params_find(&P, "model.visual.blocks.1.attn.qkv.bias"))[5] == 0.0f);
    qw_vision *v = NULL;
    int32_t odd[3] = {1, 3, 4}, ok[6] = {1, 2, 4, 1, 4, 4};
    CHECK(qw_vision_new(&P, 1, odd, "in", &v) == QW_EXIT_DATA && strstr(qw_error_msg(), "image_grid_thw[0]"));
    CHECK(qw_vision_new(&P, 2, ok, "in", &v) == 0 && qw_vision_patches(v) == 24 && qw_vision_merged_rows(v) == 6);
    qw_vision_free(v);
    qw_params_free(&P);
    qw_config t = vl_cfg(NULL);
    CHECK(qw_params_init(&P, &t) == 0);
    CHECK(qw_vision_new(&P, 2, ok, "in", &v) == QW_EXIT_DATA && strstr(qw_error_msg(), "no vision tower"));
    qw_params_free(&P);
}

int main(void)
{
    PLAN(6);
    RUN(rope_index_by_hand);
    RUN(rope_index_documents);
    RUN(rope_index_errors);
    RUN(mrope_table_axes);
    RUN(vision_config);
    RUN(vision_layout_and_grids);
    return qwtest_finish();
}
