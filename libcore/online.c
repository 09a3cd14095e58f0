/* online.c — the sampling half of online RL (qw/online.h). */
#include "qw/online.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "qw/chat.h"
#include "qw/config.h"
#include "qw/file.h"
#include "qw/reward.h"
#include "qw/rollout.h"
#include "qw/sandbox.h"
#include "qw/signals.h"
#include "qw/tokenize.h"

struct qw_online {
    qw_online_opts on;
    qw_scorer sc;
    qw_tok *tok;
    qw_prompt_rec *P;
    long np;
    int seq_len;
    qw_ids stop_ids;
    qw_coproc *cp;
    qw_afile save;
};

void qw_online_check(const qw_online_opts *on)
{
    if (!on->prompts) qw_usage_error("--online needs --prompts FILE");
    if (!on->verifier) qw_usage_error("--online needs --verifier");
    if (on->steps < 1) qw_usage_error("--steps: need at least 1");
    if (on->per_step < 0) qw_usage_error("--prompts-per-step: need at least 1");
    if (on->max_new < 1) qw_usage_error("--max-new-tokens: need at least 1");
    if (on->top_k < 0) qw_usage_error("--top-k: need K >= 0");
    if (!(on->top_p > 0 && on->top_p <= 1)) qw_usage_error("--top-p: need 0 < P <= 1");
    if (on->max_batch < 1) qw_usage_error("--max-batch: need at least 1");
    if (on->thinking && strcmp(on->thinking, "on") && strcmp(on->thinking, "off"))
        qw_usage_error("--thinking: '%s' is not on or off", on->thinking);
    if (on->thinking && !on->chat) qw_usage_error("--thinking needs --chat");
    qw_scorer sc;
    if (qw_scorer_parse(on->verifier, &sc)) qw_usage_error("%s", qw_error_msg());
    if (sc.uses[QW_VER_MODEL]) qw_usage_error("--verifier model: the reward model does not score online yet (a pipe through qw-reward does)");
    if (sc.uses[QW_VER_CMD] && !on->cmd) qw_usage_error("--verifier cmd needs --cmd \"PROG ARGS\"");
    if (on->cmd && !sc.uses[QW_VER_CMD]) qw_usage_error("--cmd is for --verifier cmd");
    if (!on->answer_field[0]) qw_usage_error("--answer-field: an empty name");
    if (on->timeout != -1 && !(on->timeout > 0 && isfinite(on->timeout))) qw_usage_error("--timeout: need S > 0");
    if (on->memory < (16LL << 20)) qw_usage_error("--memory: need at least 16M");
    if (on->sandbox && strcmp(on->sandbox, "namespaces") && strcmp(on->sandbox, "rlimits") && strcmp(on->sandbox, "auto"))
        qw_usage_error("--sandbox: '%s' is not auto, namespaces or rlimits", on->sandbox);
}


int qw_online_open(const qw_online_opts *on, const char *model_dir, const char *tokenizer, int vocab, int max_context,
                   qw_online **out)
{
    qw_online *o = qw_calloc(1, sizeof *o);
    *out = o;
    o->on = *on;
    if (qw_scorer_parse(on->verifier, &o->sc)) return qw_error_status();
    qw_scorer *sc = &o->sc;
    sc->answer_field = on->answer_field;
    qw_sandbox_mode want = 0;
    if (on->sandbox && !strcmp(on->sandbox, "namespaces")) want = QW_SANDBOX_NAMESPACES;
    else if (on->sandbox && !strcmp(on->sandbox, "rlimits")) want = QW_SANDBOX_RLIMITS;
    if (on->timeout > 0) sc->sandbox.wall_s = sc->sandbox.cpu_s = on->timeout;
    sc->sandbox.mem_bytes = (size_t)on->memory;
    sc->sandbox.procs = on->max_procs;
    sc->sandbox.out_cap = (size_t)on->max_output;

    /* the tokenizer: --tokenizer, else the model directory's when it has one (as qw-rollout) */
    int rc = 0;
    char *tok_path = qw_tok_path(tokenizer ? tokenizer : model_dir, NULL);
    FILE *probe = tokenizer ? NULL : fopen(tok_path, "r");
    if (tokenizer || probe) {
        if (probe) fclose(probe);
        if (qw_tok_load(tok_path, &o->tok)) rc = qw_error_status();
        else if (qw_tok_vocab_size(o->tok) > vocab)
            rc = qw_error(QW_EXIT_DATA, "'%s': the tokenizer has %d tokens, more than the model's vocabulary (%d): not this "
                          "model's tokenizer", tok_path, qw_tok_vocab_size(o->tok), vocab);
    }
    free(tok_path);
    if (rc) return rc;
    if (!o->tok && on->chat) return qw_error(QW_EXIT_USAGE, "--chat needs a tokenizer: '%s' has none (give --tokenizer)", model_dir);

    /* the prompts, and the fields the verifiers need */
    const char *psrc = strcmp(on->prompts, "-") ? on->prompts : "<stdin>";
    qw_buf in = {0};
    if ((rc = qw_read_input(on->prompts, &in))) return rc;
    qw_prompt_opts po = {.src = psrc, .tok = o->tok, .chat = on->chat, .thinking_off = on->thinking && !strcmp(on->thinking, "off"),
                         .vocab_size = vocab, .max_context = max_context};
    rc = qw_prompts_read(&in, &po, &o->P, &o->np);
    qw_buf_free(&in);
    if (rc) return rc;
    if (!o->np) return qw_error(QW_EXIT_DATA, "%s: no prompts", psrc);
    for (long i = 0; i < o->np && !rc; i++) {   /* a rollout record holds the prompt record's fields, and a completion */
        char where[4200];
        snprintf(where, sizeof where, "'%s': line %ld", psrc, o->P[i].line + 1);
        cJSON *r = cJSON_Duplicate(o->P[i].rec, 1);
        if (!cJSON_GetObjectItemCaseSensitive(r, "completion")) cJSON_AddStringToObject(r, "completion", "");
        if (sc->uses[QW_VER_CODE] && !cJSON_GetObjectItemCaseSensitive(r, "prompt") && o->P[i].prompt)
            cJSON_AddStringToObject(r, "prompt", o->P[i].prompt);
        const char *c;
        rc = qw_scorer_check(sc, r, where, &c);
        cJSON_Delete(r);
    }
    if (rc) return rc;
    size_t longest = 1;
    for (long i = 0; i < o->np; i++)
        if (o->P[i].ids.n > longest) longest = o->P[i].ids.n;
    long long per_seq = (long long)longest + on->max_new;
    o->seq_len = (int)(per_seq > max_context ? max_context : per_seq);
    qw_config cfg;
    if ((rc = qw_config_load(model_dir, &cfg)) || (rc = qw_rollout_eos_ids(model_dir, &cfg, &o->stop_ids))) return rc;

    if (sc->uses[QW_VER_CODE]) {
        qw_sandbox_mode mode;
        if ((rc = qw_sandbox_probe(want, on->python, &mode))) return rc;
        if (!qw_common_opts.quiet) fprintf(stderr, "%s: code runs in a sandbox: %s\n", qw_prog, qw_sandbox_mode_name(mode));
    }
    if (on->save && (rc = qw_afile_open(on->save, &o->save))) return rc;
    if (sc->uses[QW_VER_CMD] && (rc = qw_coproc_start(on->cmd, &o->cp))) return rc;
    return 0;
}

long qw_online_prompts(const qw_online *o) { return o->np; }
const qw_tok *qw_online_tok(const qw_online *o) { return o->tok; }
int qw_online_seq_len(const qw_online *o) { return o->seq_len; }

qw_engine_opts qw_online_engine_opts(const qw_online *o)
{
    return (qw_engine_opts){.max_batch = o->on.max_batch, .max_context = o->seq_len,
                            .cache_tokens = (long long)o->on.max_batch * (o->seq_len + 16)};
}

typedef struct {
    const qw_prompt_rec *const *chunk;   /* this rank's prompts of the step */
    const qw_tok *tok;
    int n, j0;                            /* j0: the first one's number in the step */
    char **text;                          /* per prompt: its n records (qw-rollout(5)) */
} gen_ctx;

static int on_done(void *ctx, int prompt, const qw_completion *c)
{
    gen_ctx *x = ctx;
    qw_buf b = {0};
    const qw_prompt_rec *it = x->chunk[prompt];
    for (int j = 0; j < x->n; j++)
        if (qw_rollout_record(&b, x->j0 + prompt, j, it->prompt, it->ids.v, it->ids.n, x->tok, &c[j], it->rec)) return QW_EXIT_DATA;
    x->text[prompt] = (char *)qw_buf_cstr(&b);
    return 0;
}

static int on_gen_step(void *ctx, const qw_gen_stats *s)
{
    (void)ctx, (void)s;
    int sig = qw_signals_stop();
    return sig ? qw_signals_status(sig) : 0;
}

/* Score the rollouts of one step (lines of `in`) into `out` as qw-reward
 * writes them. */
static int score_step(qw_online *o, long step, const qw_buf *in, qw_buf *out)
{
    char where[200];
    long line = 0;
    double cmd_timeout = o->on.timeout > 0 ? o->on.timeout : 60;
    for (size_t at = 0; at < in->n;) {
        const char *s = in->p + at, *nl = memchr(s, '\n', in->n - at);
        size_t len = nl ? (size_t)(nl - s) : in->n - at;
        at += len + (nl != NULL);
        line++;
        snprintf(where, sizeof where, "step %ld: rollout record %ld", step, line);
        cJSON *rec = qw_chat_json_parse(s, len, where);
        if (!rec) return qw_error_status();
        const char *completion;
        qw_score score = {0};
        int rc = qw_scorer_check(&o->sc, rec, where, &completion);
        if (!rc) rc = qw_score_local(&o->sc, rec, completion, &score);
        if (!rc && o->cp) rc = qw_score_cmd(o->cp, s, len, cmd_timeout, where, &score);
        if (!rc) qw_score_format(&o->sc, &score, rec, s, len, out);
        qw_score_free(&score);
        cJSON_Delete(rec);
        if (rc) return rc;
    }
    return 0;
}

int qw_online_step(qw_online *o, qw_policy *pol, long s, int per, int j0, int j1, int n, double temperature,
                   qw_buf *scored, qw_online_times *t)
{
    int k = j1 - j0;
    const qw_prompt_rec **chunk = qw_malloc((k ? k : 1) * sizeof *chunk);
    qw_gen_prompt *gp = qw_malloc((k ? k : 1) * sizeof *gp);
    char **text = qw_calloc(k ? k : 1, sizeof *text);
    for (int j = j0; j < j1; j++) {
        const qw_prompt_rec *it = &o->P[(s * per + j) % o->np];
        chunk[j - j0] = it;
        gp[j - j0] = (qw_gen_prompt){it->ids.v, (int)it->ids.n, (uint64_t)j};
    }
    qw_gen_opts go = {.n = n, .max_new_tokens = o->on.max_new, .temperature = temperature, .top_k = o->on.top_k,
                      .top_p = o->on.top_p, .seed = (uint64_t)qw_common_opts.seed + (uint64_t)s,
                      .stop_ids = o->stop_ids.v, .n_stop_ids = (int)o->stop_ids.n, .thinking_budget = -1, .tok = o->tok};
    gen_ctx gc = {chunk, o->tok, n, j0, text};
    double t0 = qw_now();
    int rc = qw_policy_generate(pol, gp, k, &go, on_done, on_gen_step, &gc);
    double t1 = qw_now();
    qw_buf roll = {0};
    for (int j = 0; j < k; j++) {
        if (text[j]) qw_buf_adds(&roll, text[j]);
        free(text[j]);
    }
    size_t from = scored->n;
    if (!rc) rc = score_step(o, s + 1, &roll, scored);
    double t2 = qw_now();
    if (!rc && o->save.f && fwrite(scored->p + from, 1, scored->n - from, o->save.f) != scored->n - from)
        rc = qw_error(QW_EXIT_FAIL, "write error on '%s'", o->on.save);
    t->gen_s = t1 - t0, t->reward_s = t2 - t1;
    qw_buf_free(&roll);
    free(chunk), free(gp), free(text);
    return rc;
}

int qw_online_close(qw_online *o, int status)
{
    if (!o) return status;
    qw_coproc_end(o->cp);
    if (o->save.f) {
        if (status) qw_afile_abort(&o->save);
        else if (qw_afile_commit(&o->save)) status = qw_error_status();
    }
    qw_ids_free(&o->stop_ids);
    qw_prompts_free(o->P, o->np);
    qw_tok_free(o->tok);
    free(o);
    return status;
}
