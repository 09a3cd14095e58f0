/* test_pref.c — preference pairs (libcore/pref.c): a good record in token-id
 * form, the ref fields, and each kind of bad record refused with
 * QW_EXIT_DATA and a message naming the line; text-form records without a
 * tokenizer or of mixed kinds refused (their tokenization is checked by
 * tests/tools/test_dpo.sh). */
#include "qwtest.h"

#include <string.h>

#include "qw/cli.h"
#include "qw/pref.h"

TEST(good)
{
    qw_pref_pair p;
    CHECK(qw_pref_parse_ids("{\"prompt_ids\":[1,2,3],\"chosen_ids\":[4,5],\"rejected_ids\":[255]}", "f", 7, 256, &p) == 0);
    CHECK(p.n_prompt == 3 && p.n_chosen == 2 && p.n_rejected == 1);
    CHECK(p.prompt[2] == 3 && p.chosen[0] == 4 && p.chosen[1] == 5 && p.rejected[0] == 255);
    CHECK(!p.has_ref && p.line == 7);
    qw_pref_pair_free(&p);
    CHECK(qw_pref_parse_ids("{\"prompt_ids\":[],\"chosen_ids\":[4],\"rejected_ids\":[9],"
                            "\"ref_chosen_logp\":-1.5,\"ref_rejected_logp\":-2.25}", "f", 1, 256, &p) == 0);
    CHECK(p.n_prompt == 0 && p.has_ref);
    CHECK_NEAR(p.ref_c, -1.5, 0);
    CHECK_NEAR(p.ref_r, -2.25, 0);
    qw_pref_pair_free(&p);
}

/* A bad record: QW_EXIT_DATA, the message names file and line and holds `why`. */
static int refused(const char *text, const char *why)
{
    qw_pref_pair p;
    qw_error_clear();
    int rc = qw_pref_parse_ids(text, "pairs.jsonl", 42, 256, &p);
    const char *m = qw_error_msg();
    int ok = rc == QW_EXIT_DATA && strstr(m, "'pairs.jsonl': line 42") && strstr(m, why) && !p.chosen && !p.prompt;
    if (!ok) fprintf(stderr, "rc %d, message: %s\n", rc, m);
    return ok;
}

TEST(bad)
{
    CHECK(refused("[1,2]", "not a JSON object"));
    CHECK(refused("{\"prompt_ids\":[1]", "not a JSON object"));
    CHECK(refused("{\"chosen_ids\":[4],\"rejected_ids\":[9]}", "missing \"prompt_ids\""));
    CHECK(refused("{\"prompt_ids\":[1],\"rejected_ids\":[9]}", "missing \"chosen_ids\""));
    CHECK(refused("{\"prompt_ids\":[1],\"chosen_ids\":\"hi\",\"rejected_ids\":[9]}", "\"chosen_ids\" is not an array"));
    CHECK(refused("{\"prompt_ids\":[1],\"chosen_ids\":[4],\"rejected_ids\":[]}", "\"rejected_ids\" is empty"));
    CHECK(refused("{\"prompt_ids\":[1],\"chosen_ids\":[256],\"rejected_ids\":[9]}", "\"chosen_ids\"[0] = 256 is outside the model's vocabulary (256)"));
    CHECK(refused("{\"prompt_ids\":[1,-1],\"chosen_ids\":[4],\"rejected_ids\":[9]}", "\"prompt_ids\"[1]"));
    CHECK(refused("{\"prompt_ids\":[1],\"chosen_ids\":[4],\"rejected_ids\":[2.5]}", "\"rejected_ids\"[0] is not an integer token id"));
    CHECK(refused("{\"prompt_ids\":[1],\"chosen_ids\":[4],\"rejected_ids\":[9],\"ref_chosen_logp\":-1}", "give both"));
    CHECK(refused("{\"prompt_ids\":[1],\"chosen_ids\":[4],\"rejected_ids\":[9],\"ref_chosen_logp\":1,\"ref_rejected_logp\":-1}",
                  "positive"));
}

TEST(text_forms)
{
    CHECK(refused("{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}", "a text pair needs the tokenizer"));
    CHECK(refused("{\"prompt\":\"a\",\"chosen\":\"b\"}", "missing \"rejected\""));
    CHECK(refused("{\"prompt\":\"a\",\"chosen\":[{\"role\":\"assistant\",\"content\":\"b\"}],\"rejected\":\"c\"}",
                  "\"chosen\" is not a string"));
    CHECK(refused("{\"prompt\":[{\"role\":\"user\",\"content\":\"a\"}],\"chosen\":\"b\",\"rejected\":[]}",
                  "\"chosen\" is not a list of messages"));
    /* "prompt_ids" decides the form: a record with both is read as ids */
    qw_pref_pair p;
    CHECK(qw_pref_parse("{\"prompt\":\"x\",\"prompt_ids\":[1],\"chosen_ids\":[2],\"rejected_ids\":[3]}", "-", 3, 256, NULL, &p) == 0);
    CHECK(p.n_prompt == 1 && p.line == 3);
    qw_pref_pair_free(&p);
    /* stdin is named <stdin> */
    qw_error_clear();
    CHECK(qw_pref_parse("{\"prompt_ids\":[1]}", "-", 5, 256, NULL, &p) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "'<stdin>': line 5") != NULL);
}

int main(void)
{
    PLAN(3);
    RUN(good);
    RUN(bad);
    RUN(text_forms);
    return qwtest_finish();
}
