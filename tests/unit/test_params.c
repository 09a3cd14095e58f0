/* test_params.c — parameter layout, init, load (both MoE layouts, errors), save. */
#include <stdint.h>
#include <unistd.h>

#include "qwtest.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/optim.h"
#include "qw/params.h"
#include "qw/st.h"

static char dir[256];

static const char *tpath(const char *name) { return qwtest_join(dir, name); }

static qw_config dense_cfg(int tied)
{
    qw_config c;
    char j[512];
    snprintf(j, sizeof j,
             "{\"model_type\":\"qwen3\",\"vocab_size\":50,\"hidden_size\":12,\"intermediate_size\":20,"
             "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":6,"
             "\"tie_word_embeddings\":%s,\"initializer_range\":0.05,\"bos_token_id\":1,\"eos_token_id\":2}",
             tied ? "true" : "false");
    if (qw_config_parse(j, "dense", &c)) fprintf(stderr, "%s\n", qw_error_msg());
    return c;
}

static qw_config moe_cfg(const char *type)
{
    qw_config c;
    char j[768];
    int vl = !strcmp(type, "qwen3_vl_moe");
    snprintf(j, sizeof j,
             "{\"model_type\":\"%s\",%s\"vocab_size\":40,\"hidden_size\":8,\"intermediate_size\":10,"
             "\"num_hidden_layers\":3,\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":4,"
             "\"num_experts\":4,\"num_experts_per_tok\":2,\"moe_intermediate_size\":6,\"mlp_only_layers\":[1]%s}",
             type, vl ? "\"text_config\":{" : "", vl ? "}" : "");
    if (qw_config_parse(j, type, &c)) fprintf(stderr, "%s\n", qw_error_msg());
    return c;
}

/* Write P's tensors (all, or all but `skip`) plus an optional extra one. */
static void write_ckpt(const qw_params *P, const char *path, const char *skip, const char *extra, qw_dtype dt)
{
    qw_st_writer *w = qw_st_writer_new();
    static float x[4] = {1, 2, 3, 4};
    int64_t s4[1] = {4};
    for (int i = 0; i < P->n; i++)
        if (!skip || strcmp(skip, P->p[i].name))
            qw_st_writer_add_f32(w, P->p[i].name, dt, P->p[i].ndim, P->p[i].shape, qw_params_ptr(P, &P->p[i]));
    if (extra) qw_st_writer_add_f32(w, extra, QW_DT_F32, 1, s4, x);
    if (qw_st_writer_write(w, path)) fprintf(stderr, "%s\n", qw_error_msg());
    qw_st_writer_free(w);
}

static int load_fails(qw_params *P, const char *path, int allow_extra, const char *want)
{
    qw_st *st = NULL;
    if (qw_st_open(path, &st)) { fprintf(stderr, "  open: %s\n", qw_error_msg()); return 0; }
    qw_error_clear();
    int rc = qw_params_load(P, st, allow_extra);
    qw_st_close(st);
    int ok = rc == QW_EXIT_DATA && strstr(qw_error_msg(), want);
    if (!ok) fprintf(stderr, "  rc %d, message '%s', wanted '%s'\n", rc, qw_error_msg(), want);
    return ok;
}

TEST(dense_layout)
{
    qw_config c = dense_cfg(0);
    qw_params P;
    CHECK(qw_params_init(&P, &c) == 0);
    int64_t total, active, sum = 0;
    qw_config_param_counts(&c, &total, &active);
    for (int i = 0; i < P.n; i++) {
        sum += P.p[i].numel;
        CHECK(P.p[i].offset % 16 == 0);
        CHECK(i == 0 || P.p[i].offset >= P.p[i - 1].offset + P.p[i - 1].numel);
    }
    CHECK(sum == total && P.total >= (size_t)total);
    CHECK(P.n == 1 + 2 * 11 + 2);
    CHECK(((uintptr_t)P.data & 63) == 0);
    CHECK_STR(P.p[0].name, "model.embed_tokens.weight");
    const qw_param *q = qw_params_find(&P, "model.layers.1.self_attn.q_proj.weight");
    CHECK(q && q->ndim == 2 && q->shape[0] == 24 && q->shape[1] == 12 && !q->no_decay);
    const qw_param *o = qw_params_find(&P, "model.layers.1.self_attn.o_proj.weight");
    CHECK(o && o->shape[0] == 12 && o->shape[1] == 24);
    CHECK(qw_params_find(&P, "model.layers.0.self_attn.k_norm.weight")->no_decay);
    CHECK(qw_params_find(&P, "model.embed_tokens.weight")->no_decay);
    CHECK(!qw_params_find(&P, "lm_head.weight")->no_decay);
    CHECK(P.layer[1].q == qw_params_ptr(&P, q) && P.layer[1].o == qw_params_ptr(&P, o));
    CHECK(P.layer[0].down == qw_params_ptr(&P, qw_params_find(&P, "model.layers.0.mlp.down_proj.weight")));
    CHECK(!P.layer[0].is_moe && !P.layer[0].router && P.layer[0].q_norm);
    CHECK(P.lm_head != P.embed && P.final_norm == qw_params_ptr(&P, qw_params_find(&P, "model.norm.weight")));
    CHECK(qw_params_find(&P, "model.layers.2.mlp.up_proj.weight") == NULL);
    qw_params G;
    CHECK(qw_params_alloc_like(&G, &P) == 0);
    CHECK(G.n == P.n && G.total == P.total && G.data != P.data && G.layer[1].q == G.data + q->offset);
    qw_params_free(&G);
    qw_params_free(&P);

    qw_config t = dense_cfg(1);
    CHECK(qw_params_init(&P, &t) == 0);
    CHECK(qw_params_find(&P, "lm_head.weight") == NULL && P.lm_head == P.embed);
    qw_config_param_counts(&t, &total, &active);
    sum = 0;
    for (int i = 0; i < P.n; i++) sum += P.p[i].numel;
    CHECK(sum == total);
    qw_params_free(&P);
}

TEST(moe_layout)
{
    qw_config c = moe_cfg("qwen3_moe");
    qw_params P;
    CHECK(qw_params_init(&P, &c) == 0);
    CHECK(P.layer[0].is_moe && !P.layer[1].is_moe && P.layer[2].is_moe);
    CHECK(P.layer[1].gate && !P.layer[1].exp_gate && P.layer[2].router && !P.layer[2].gate);
    for (int e = 0; e < 4; e++) {
        char n[128];
        snprintf(n, sizeof n, "model.layers.2.mlp.experts.%d.gate_proj.weight", e);
        CHECK(qw_params_ptr(&P, qw_params_find(&P, n)) == P.layer[2].exp_gate + e * 6 * 8);
        snprintf(n, sizeof n, "model.layers.2.mlp.experts.%d.up_proj.weight", e);
        CHECK(qw_params_ptr(&P, qw_params_find(&P, n)) == P.layer[2].exp_up + e * 6 * 8);
        snprintf(n, sizeof n, "model.layers.2.mlp.experts.%d.down_proj.weight", e);
        const qw_param *d = qw_params_find(&P, n);
        CHECK(qw_params_ptr(&P, d) == P.layer[2].exp_down + e * 8 * 6 && d->shape[0] == 8 && d->shape[1] == 6);
    }
    CHECK(qw_params_find(&P, "model.layers.0.mlp.gate.weight")->shape[0] == 4);
    int64_t total, sum = 0;
    qw_config_param_counts(&c, &total, NULL);
    for (int i = 0; i < P.n; i++) sum += P.p[i].numel;
    CHECK(sum == total);
    qw_params_free(&P);
}

TEST(init_random)
{
    qw_config c = dense_cfg(0);
    c.vocab_size = 2000;   /* enough numbers for the moments */
    qw_params A, B;
    CHECK(qw_params_init(&A, &c) == 0 && qw_params_init(&B, &c) == 0);
    qw_params_init_random(&A, 7);
    qw_params_init_random(&B, 7);
    CHECK(!memcmp(A.data, B.data, A.total * sizeof(float)));
    CHECK(A.layer[0].input_norm[3] == 1.0f && A.layer[1].k_norm[5] == 1.0f && A.final_norm[0] == 1.0f);
    double s = 0, s2 = 0;
    int64_t n = (int64_t)c.vocab_size * c.hidden_size;
    for (int64_t i = 0; i < n; i++) { s += A.embed[i]; s2 += (double)A.embed[i] * A.embed[i]; }
    CHECK_NEAR(s / n, 0.0, 0.002);
    CHECK_NEAR(sqrt(s2 / n), 0.05, 0.002);
    CHECK(memcmp(A.embed, A.lm_head, 100 * sizeof(float)));
    qw_params_init_random(&B, 8);
    CHECK(memcmp(A.embed, B.embed, 100 * sizeof(float)));
    /* a tensor's values do not depend on the rest of the layout */
    qw_config c3 = c;
    c3.num_hidden_layers = 3;
    c3.intermediate_size = 7;
    qw_params C;
    CHECK(qw_params_init(&C, &c3) == 0);
    qw_params_init_random(&C, 7);
    CHECK(!memcmp(C.layer[1].q, A.layer[1].q, 24 * 12 * sizeof(float)));
    qw_params_free(&A);
    qw_params_free(&B);
    qw_params_free(&C);
}

TEST(save_load_round_trip)
{
    qw_config c = moe_cfg("qwen3_moe");
    qw_params A, B;
    CHECK(qw_params_init(&A, &c) == 0 && qw_params_init(&B, &c) == 0);
    qw_params_init_random(&A, 1);
    CHECK(qw_params_save(&A, tpath("f32"), QW_DT_F32) == 0);
    qw_st *st = NULL;
    CHECK(qw_st_open(tpath("f32"), &st) == 0);
    CHECK_STR(qw_st_metadata(st, "format"), "pt");
    CHECK(qw_params_load(&B, st, 0) == 0);
    qw_st_close(st);
    CHECK(!memcmp(A.data, B.data, A.total * sizeof(float)));
    qw_config back;
    CHECK(qw_config_load(tpath("f32"), &back) == 0 && back.num_experts == 4 && back.n_mlp_only_layers == 1);
    CHECK_STR(back.torch_dtype, "float32");
    CHECK(access(tpath("f32/generation_config.json"), R_OK) == 0);

    CHECK(qw_params_save(&A, tpath("bf16"), QW_DT_BF16) == 0);
    CHECK(qw_st_open(tpath("bf16"), &st) == 0);
    CHECK(qw_st_find(st, "model.layers.2.mlp.experts.3.down_proj.weight")->dtype == QW_DT_BF16);
    CHECK(qw_params_load(&B, st, 0) == 0);
    qw_st_close(st);
    int exact = 1;
    for (size_t i = 0; i < A.total; i++) exact &= B.data[i] == qw_bf16_to_f32(qw_f32_to_bf16(A.data[i]));
    CHECK(exact);
    CHECK(qw_config_load(tpath("bf16"), &back) == 0);
    CHECK_STR(back.torch_dtype, "bfloat16");
    CHECK(qw_params_save(&A, tpath("f16"), QW_DT_F16) == QW_EXIT_FAIL);
    qw_params_free(&A);
    qw_params_free(&B);
}

/* On the CPU backend: the arena moves (views rebased, values kept),
 * alloc_like stays there, saving downloads, loading refuses. */
TEST(to_device_round_trip_cpu)
{
    const qw_ops *cpu = qw_ops_cpu();
    qw_config c = moe_cfg("qwen3_moe");
    qw_params A, G, B;
    CHECK(qw_params_init(&A, &c) == 0 && A.ops == NULL && A.compute == (void *)A.data);
    qw_params_init_random(&A, 3);
    float *ref = qw_malloc(A.total * sizeof *ref);
    memcpy(ref, A.data, A.total * sizeof *ref);
    size_t use0, use, peak;
    cpu->mem_stats(&use0, &peak);
    CHECK(qw_params_to_device(&A, cpu) == 0);
    cpu->mem_stats(&use, &peak);
    CHECK(use >= use0 + A.total * sizeof(float));
    CHECK(A.ops == cpu && A.compute == (void *)A.data);
    CHECK(qw_params_to_device(&A, cpu) == 0);   /* already there */
    CHECK(!memcmp(A.data, ref, A.total * sizeof *ref));
    const qw_param *q = qw_params_find(&A, "model.layers.2.self_attn.q_proj.weight");
    CHECK(A.layer[2].q == A.data + q->offset && A.embed == A.data && A.lm_head != A.embed);
    CHECK(A.layer[0].exp_down == qw_params_ptr(&A, qw_params_find(&A, "model.layers.0.mlp.experts.0.down_proj.weight")));
    CHECK(qw_params_alloc_like(&G, &A) == 0 && G.ops == cpu && G.compute == NULL);
    CHECK(G.data != A.data && G.layer[2].q == G.data + q->offset && G.data[G.total - 1] == 0);
    float *owned;
    const float *h = qw_params_host(&A, &owned);
    CHECK(owned != NULL && h == owned && !memcmp(h, ref, A.total * sizeof *ref));
    free(owned);
    CHECK(qw_params_save(&A, tpath("dev"), QW_DT_F32) == 0);
    qw_st *st = NULL;
    CHECK(qw_params_init(&B, &c) == 0 && qw_st_open(tpath("dev"), &st) == 0);
    CHECK(qw_params_load(&B, st, 0) == 0);
    CHECK(!memcmp(B.data, ref, B.total * sizeof *ref));
    CHECK(qw_params_load(&A, st, 0) == QW_EXIT_FAIL);
    qw_st_close(st);
    qw_params_free(&A);
    qw_params_free(&G);
    qw_params_free(&B);
    cpu->mem_stats(&use, &peak);
    CHECK(use == use0);
    free(ref);
}

/* A CPU backend posing as bf16 (act_size 2), to check the compute copy:
 * made by to_device, refreshed by sync_compute and by the optimizer. */
static void bf16_to_act(void *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = qw_f32_to_bf16(src[i]);
}
static void bf16_adamw(float *p, void *p_act, const float *g, float *m, float *v, size_t n, const qw_adamw_scalars *s)
{
    qw_ops_cpu()->adamw(p, NULL, g, m, v, n, s);
    if (p_act) bf16_to_act(p_act, p, n);
}
static int compute_is_bf16_of_data(const qw_params *P)
{
    const uint16_t *h = P->compute;
    for (size_t i = 0; i < P->total; i++)
        if (h[i] != qw_f32_to_bf16(P->data[i])) return 0;
    return 1;
}

TEST(compute_copy_bf16)
{
    qw_ops fake = *qw_ops_cpu();
    fake.name = "fake-bf16", fake.act_size = 2, fake.to_act = bf16_to_act, fake.adamw = bf16_adamw;
    qw_config c = dense_cfg(0);
    qw_params P, G, M, V;
    CHECK(qw_params_init(&P, &c) == 0);
    qw_params_init_random(&P, 5);
    CHECK(qw_params_to_device(&P, &fake) == 0 && P.ops == &fake && P.compute != (void *)P.data);
    CHECK(compute_is_bf16_of_data(&P));
    P.layer[1].v[3] += 1.0f;   /* changed outside the optimizer */
    CHECK(!compute_is_bf16_of_data(&P));
    qw_params_sync_compute(&P);
    CHECK(compute_is_bf16_of_data(&P));
    CHECK(qw_params_alloc_like(&G, &P) == 0 && qw_params_alloc_like(&M, &P) == 0 && qw_params_alloc_like(&V, &P) == 0);
    CHECK(G.compute == NULL && G.ops == &fake);
    for (int i = 0; i < G.n; i++)
        for (int64_t j = 0; j < G.p[i].numel; j++) G.data[G.p[i].offset + j] = 0.01f * (float)((j % 7) - 3);
    float before = P.layer[0].q[1];
    qw_adamw o = qw_adamw_defaults();
    qw_adamw_step(&o, &P, &G, &M, &V, 1, 1e-2, 1.0);
    CHECK(P.layer[0].q[1] != before);
    CHECK(compute_is_bf16_of_data(&P));
    CHECK(qw_params_to_device(&P, qw_ops_cpu()) == QW_EXIT_FAIL);
    CHECK(strstr(qw_error_msg(), "fake-bf16") != NULL);
    qw_params_free(&P); qw_params_free(&G); qw_params_free(&M); qw_params_free(&V);
}

TEST(load_errors)
{
    qw_config c = dense_cfg(0);
    qw_params A, B;
    CHECK(qw_params_init(&A, &c) == 0 && qw_params_init(&B, &c) == 0);
    qw_params_init_random(&A, 3);
    write_ckpt(&A, tpath("miss.safetensors"), "model.layers.1.mlp.up_proj.weight", NULL, QW_DT_F32);
    CHECK(load_fails(&B, tpath("miss.safetensors"), 0, "miss.safetensors': missing tensor 'model.layers.1.mlp.up_proj.weight'"));
    write_ckpt(&A, tpath("extra.safetensors"), NULL, "model.layers.0.mlp.extra.bias", QW_DT_F32);
    CHECK(load_fails(&B, tpath("extra.safetensors"), 0, "extra.safetensors': unexpected tensor 'model.layers.0.mlp.extra.bias'"));
    qw_st *st = NULL;
    CHECK(qw_st_open(tpath("miss.safetensors"), &st) == 0);   /* check: the same verdict, no arena */
    CHECK(qw_params_check(&c, st, 0) == QW_EXIT_DATA && strstr(qw_error_msg(), "missing tensor 'model.layers.1.mlp.up_proj.weight'"));
    qw_st_close(st);
    CHECK(qw_st_open(tpath("extra.safetensors"), &st) == 0);
    CHECK(qw_params_check(&c, st, 0) == QW_EXIT_DATA && strstr(qw_error_msg(), "unexpected tensor"));
    CHECK(qw_params_check(&c, st, 1) == 0);
    CHECK(qw_params_load(&B, st, 1) == 0);
    qw_st_close(st);
    CHECK(!memcmp(A.data, B.data, A.total * sizeof(float)));

    /* a config with another width: every shape is off */
    qw_config w = c;
    w.intermediate_size = 21;
    qw_params W;
    CHECK(qw_params_init(&W, &w) == 0);
    CHECK(load_fails(&W, tpath("extra.safetensors"), 1,
                     "tensor 'model.layers.0.mlp.gate_proj.weight': shape [20,12] does not match the config ([21,12])"));
    qw_params_free(&W);

    /* integer dtype */
    qw_st_writer *wr = qw_st_writer_new();
    static int32_t ints[12];
    int64_t s12[1] = {12};
    for (int i = 0; i < A.n; i++)
        if (strcmp(A.p[i].name, "model.norm.weight"))
            qw_st_writer_add(wr, A.p[i].name, QW_DT_F32, A.p[i].ndim, A.p[i].shape, qw_params_ptr(&A, &A.p[i]));
    qw_st_writer_add(wr, "model.norm.weight", QW_DT_I32, 1, s12, ints);
    qw_st_writer_write(wr, tpath("int.safetensors"));
    qw_st_writer_free(wr);
    CHECK(load_fails(&B, tpath("int.safetensors"), 0, "tensor 'model.norm.weight': dtype I32 is not a float type"));

    /* tied: an lm_head in the file is ignored; untied needs it */
    qw_config t = dense_cfg(1);
    qw_params T;
    CHECK(qw_params_init(&T, &t) == 0);
    CHECK(qw_st_open(tpath("extra.safetensors"), &st) == 0);
    CHECK(qw_params_load(&T, st, 0) == QW_EXIT_DATA && strstr(qw_error_msg(), "unexpected tensor 'model.layers.0.mlp.extra.bias'"));
    qw_st_close(st);
    write_ckpt(&A, tpath("head.safetensors"), NULL, NULL, QW_DT_BF16);
    CHECK(qw_st_open(tpath("head.safetensors"), &st) == 0);
    CHECK(qw_params_load(&T, st, 0) == 0);
    qw_st_close(st);
    CHECK(T.embed[5] == qw_bf16_to_f32(qw_f32_to_bf16(A.embed[5])));
    write_ckpt(&T, tpath("tied.safetensors"), NULL, NULL, QW_DT_F32);
    CHECK(load_fails(&B, tpath("tied.safetensors"), 0, "missing tensor 'lm_head.weight'"));
    qw_params_free(&T);
    qw_params_free(&A);
    qw_params_free(&B);
}

/* Write A's MoE layers fused: [E,2Ie,H]/[E,H,Ie], or transposed [E,H,2Ie]/[E,Ie,H]. */
static void write_fused(const qw_params *A, const char *path, int transposed, int also_per_expert)
{
    const qw_config *c = &A->cfg;
    int64_t E = c->num_experts, Ie = c->moe_intermediate_size, H = c->hidden_size, per = Ie * H;
    const char *pre = transposed ? "model.language_model." : "model.";
    qw_st_writer *w = qw_st_writer_new();
    float *bufs[QW_CONFIG_MAX_LAYERS][2] = {{0}};
    for (int i = 0; i < A->n; i++) {
        const qw_param *p = &A->p[i];
        if (!also_per_expert && strstr(p->name, ".experts.")) continue;
        qw_st_writer_add_f32(w, p->name, QW_DT_F32, p->ndim, p->shape, qw_params_ptr(A, p));
    }
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const qw_layer_params *L = &A->layer[l];
        if (!L->is_moe) continue;
        float *gu = bufs[l][0] = malloc(E * 2 * per * sizeof(float)), *dn = bufs[l][1] = malloc(E * per * sizeof(float));
        for (int64_t e = 0; e < E; e++)
            for (int64_t j = 0; j < Ie; j++)
                for (int64_t h = 0; h < H; h++) {
                    float g = L->exp_gate[e * per + j * H + h], u = L->exp_up[e * per + j * H + h];
                    float d = L->exp_down[e * per + h * Ie + j];
                    if (transposed) {
                        gu[e * 2 * per + h * 2 * Ie + j] = g;
                        gu[e * 2 * per + h * 2 * Ie + Ie + j] = u;
                        dn[e * per + j * H + h] = d;
                    } else {
                        gu[e * 2 * per + j * H + h] = g;
                        gu[e * 2 * per + (Ie + j) * H + h] = u;
                        dn[e * per + h * Ie + j] = d;
                    }
                }
        int64_t sg[3] = {E, transposed ? H : 2 * Ie, transposed ? 2 * Ie : H};
        int64_t sd[3] = {E, transposed ? Ie : H, transposed ? H : Ie};
        char n[128];
        snprintf(n, sizeof n, "%slayers.%d.mlp.experts.gate_up_proj", pre, l);
        qw_st_writer_add_f32(w, n, QW_DT_F32, 3, sg, gu);
        snprintf(n, sizeof n, "%slayers.%d.mlp.experts.down_proj", pre, l);
        qw_st_writer_add_f32(w, n, QW_DT_F32, 3, sd, dn);
    }
    if (qw_st_writer_write(w, path)) fprintf(stderr, "%s\n", qw_error_msg());
    qw_st_writer_free(w);
    for (int l = 0; l < c->num_hidden_layers; l++) { free(bufs[l][0]); free(bufs[l][1]); }
}

TEST(fused_layouts)
{
    const char *types[2] = {"qwen3_moe", "qwen3_vl_moe"};
    for (int t = 0; t < 2; t++) {
        qw_config c = moe_cfg(types[t]);
        qw_params A, B;
        CHECK(qw_params_init(&A, &c) == 0 && qw_params_init(&B, &c) == 0);
        CHECK(!t || !strcmp(A.p[0].name, "model.language_model.embed_tokens.weight"));
        qw_params_init_random(&A, 11);
        write_fused(&A, tpath("fused.safetensors"), t, 0);
        qw_st *st = NULL;
        CHECK(qw_st_open(tpath("fused.safetensors"), &st) == 0);
        CHECK(qw_params_load(&B, st, 0) == 0);
        qw_st_close(st);
        CHECK(!memcmp(A.data, B.data, A.total * sizeof(float)));
        CHECK(qw_st_open(tpath("fused.safetensors"), &st) == 0 && qw_params_check(&c, st, 0) == 0);
        qw_st_close(st);
        write_fused(&A, tpath("both.safetensors"), t, 1);
        CHECK(load_fails(&B, tpath("both.safetensors"), 0, "is given twice"));
        qw_params_free(&A);
        qw_params_free(&B);
    }
    /* a fused tensor on a dense layer, or of the wrong shape */
    qw_config c = moe_cfg("qwen3_moe");
    qw_params A;
    CHECK(qw_params_init(&A, &c) == 0);
    qw_st_writer *w = qw_st_writer_new();
    static float z[4 * 12 * 8];
    int64_t bad[3] = {4, 8, 12};
    qw_st_writer_add(w, "model.layers.0.mlp.experts.gate_up_proj", QW_DT_F32, 3, bad, z);
    qw_st_writer_write(w, tpath("badfused.safetensors"));
    qw_st_writer_free(w);
    CHECK(load_fails(&A, tpath("badfused.safetensors"), 0,
                     "tensor 'model.layers.0.mlp.experts.gate_up_proj': shape [4,8,12] does not match the config ([4,12,8])"));
    w = qw_st_writer_new();
    qw_st_writer_add(w, "model.layers.1.mlp.experts.down_proj", QW_DT_F32, 3, bad, z);
    qw_st_writer_write(w, tpath("densefused.safetensors"));
    qw_st_writer_free(w);
    CHECK(load_fails(&A, tpath("densefused.safetensors"), 0, "unexpected tensor 'model.layers.1.mlp.experts.down_proj'"));
    CHECK(load_fails(&A, tpath("densefused.safetensors"), 1, "missing tensor 'model.embed_tokens.weight'"));
    qw_params_free(&A);
}

TEST(golden_fixtures_load)
{
    const char *names[3] = {"dense_yarn", "dense_tied", "moe"};
    for (int k = 0; k < 3; k++) {
        char p[256];
        snprintf(p, sizeof p, "tests/golden/%s/model", names[k]);
        qw_config c;
        CHECK_MSG(qw_config_load(qwtest_path(p), &c) == 0, "%s", qw_error_msg());
        qw_params P;
        CHECK(qw_params_init(&P, &c) == 0);
        qw_st *st = NULL;
        CHECK_MSG(qw_st_open(qwtest_path(p), &st) == 0, "%s", qw_error_msg());
        if (!st) continue;
        CHECK_MSG(qw_params_load(&P, st, 0) == 0, "%s", qw_error_msg());
        /* the arena holds exactly the file's values */
        const qw_st_tensor *t = qw_st_find(st, "model.layers.1.self_attn.o_proj.weight");
        float *v = malloc(t->numel * sizeof(float));
        qw_st_to_f32(t, v);
        CHECK(!memcmp(v, P.layer[1].o, t->numel * sizeof(float)));
        free(v);
        qw_st_close(st);
        /* the expected gradients name exactly the layout's tensors */
        snprintf(p, sizeof p, "tests/golden/%s/expected.safetensors", names[k]);
        CHECK(qw_st_open(qwtest_path(p), &st) == 0);
        int grads = 0;
        for (int i = 0; st && i < qw_st_count(st); i++) {
            const qw_st_tensor *g = qw_st_at(st, i);
            if (strncmp(g->name, "grad.", 5)) continue;
            grads++;
            const qw_param *q = qw_params_find(&P, g->name + 5);
            CHECK_MSG(q && q->numel == g->numel, "%s", g->name);
        }
        CHECK(grads == P.n);
        CHECK(qw_st_find(st, "logits")->shape[2] == c.vocab_size);
        qw_st_close(st);
        if (k == 2) {
            qw_config cf;
            qw_params F;
            CHECK(qw_config_load(qwtest_path("tests/golden/moe/model_fused"), &cf) == 0);
            CHECK(qw_params_init(&F, &cf) == 0);
            CHECK(qw_st_open(qwtest_path("tests/golden/moe/model_fused"), &st) == 0);
            CHECK(qw_st_find(st, "model.layers.0.mlp.experts.gate_up_proj") != NULL);
            CHECK_MSG(qw_params_load(&F, st, 0) == 0, "%s", qw_error_msg());
            qw_st_close(st);
            CHECK(F.total == P.total && !memcmp(F.data, P.data, P.total * sizeof(float)));
            qw_params_free(&F);
        }
        qw_params_free(&P);
    }
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/qw-test-params.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    PLAN(9);
    RUN(dense_layout);
    RUN(moe_layout);
    RUN(init_random);
    RUN(save_load_round_trip);
    RUN(to_device_round_trip_cpu);
    RUN(compute_copy_bf16);
    RUN(load_errors);
    RUN(fused_layouts);
    RUN(golden_fixtures_load);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) return 1;
    return qwtest_finish();
}
