/* qw/ckpt.h — training checkpoints: write atomically, find, resume.
 *
 * A checkpoint is a Hugging Face model directory with the training state
 * beside the weights (doc/design.md, qw-checkpoint(5)):
 *
 *   OUT/step-000120/                   NNNNNN: the optimizer step, 6+ digits
 *       config.json                    }  qw_params_save: fp32 weights, so a
 *       model.safetensors              }  resume is bit-exact
 *       tokenizer.json …               copied from tokenizer_dir when present
 *       trainer_state/
 *           optimizer.safetensors      F32 "exp_avg.<name>", "exp_avg_sq.<name>"
 *                                      for every parameter, in the Hub layout
 *           state.json                 step, tokens, optimizer and schedule
 *                                      settings, data position, RNG, run
 *   OUT/latest                         "step-000120\n": the newest complete one
 *
 * Everything is keyed by parameter name and stored whole (not per rank), so
 * a run can resume under another parallel layout; under ZeRO gather the
 * moments first, and let one rank save.
 *
 * state.json is one object: {"format": "qw-trainer-state", "version": 1,
 * "step", "tokens", "optimizer": {"name": "adamw", "beta1", "beta2", "eps",
 * "weight_decay"}, "schedule": {"kind", "lr", "min_lr_ratio", "warmup",
 * "total", "decay_frac", "decay_shape"}, "data", "rng", "run"}.  data, rng
 * and run are the caller's JSON values, stored as given (write 64-bit
 * integers such as RNG words as strings: JSON numbers are doubles).
 *
 * Atomicity.  qw_ckpt_save writes everything into OUT/.step-NNNNNN.tmp/,
 * fsyncs every file and directory, renames it to OUT/step-NNNNNN (see
 * "Replacing" for an existing directory of that name), fsyncs OUT, then
 * replaces OUT/latest the same way (qw/file.h: OUT/latest.tmp, fsync,
 * rename, fsync of OUT), and only then deletes older step directories
 * beyond keep_last.  A failure at any point (a full disk, a file-size
 * limit) removes the temporary directory and leaves every earlier
 * checkpoint and OUT/latest as they were.  A run killed mid-save leaves at
 * most a stale .step-*.tmp, which the next successful save deletes (one
 * run saves into an OUT at a time).
 *
 * Replacing.  Saving a step whose directory exists (a rerun) swaps the new
 * directory in with renameat2(RENAME_EXCHANGE) and deletes the old one.
 * File systems without it (NFS, Lustre: EINVAL, ENOSYS, EOPNOTSUPP) get a
 * rename sequence instead, with an fsync of OUT after each rename:
 *   1. rename OUT/step-N to OUT/.step-N.old (the old checkpoint, whole);
 *   2. rename OUT/.step-N.tmp to OUT/step-N (the new one, whole);
 *   3. delete OUT/.step-N.old.
 * Between 1 and 2 the final name is missing; every reader resolves
 * through OUT/latest (qw_ckpt_latest, qw_ckpt_resolve, qw_ckpt_model_dir),
 * which then takes OUT/.step-N.old, so a reader always finds a complete
 * checkpoint: the old one up to 2, the new one after.  A crash between 1
 * and 2 is repaired by the next save (it renames .step-N.old back first)
 * and tolerated by a resume (through latest, as above); a crash between 2
 * and 3 leaves a stale .step-N.old, deleted by the next save's pruning.
 * The environment variable QW_CKPT_RENAME_FALLBACK=1 forces the sequence
 * (for tests, and for file systems that claim RENAME_EXCHANGE but break it).
 *
 * Errors: 0 or QW_EXIT_* with a message naming the file (qw/cli.h).  I/O
 * failures are QW_EXIT_FAIL; a directory that is not a checkpoint, a
 * malformed state.json or optimizer file, or a checkpoint whose config does
 * not match the run's is QW_EXIT_DATA.
 */
#ifndef QW_CKPT_H
#define QW_CKPT_H

#include <cJSON.h>

#include "qw/optim.h"
#include "qw/params.h"
#include "qw/rng.h"

typedef struct {
    long step;              /* optimizer updates done */
    long long tokens;       /* training tokens consumed */
    qw_adamw adamw;         /* optimizer settings */
    qw_sched sched;         /* schedule settings */
    cJSON *data;            /* data position: any JSON value, opaque here; owned */
    cJSON *rng;             /* RNG state: any JSON value; owned */
    cJSON *run;             /* the run's settings (options): any JSON value; owned */
} qw_train_state;

/* Delete the JSON values and zero the struct. */
void qw_train_state_free(qw_train_state *s);

typedef struct {
    const char *out;             /* OUT: created if missing (its parent must exist) */
    int keep_last;               /* keep this many step directories (≤ 0: all) */
    const char *tokenizer_dir;   /* copy tokenizer files from here; NULL: none */
} qw_ckpt_opts;

/* Tokenizer files copied when present in tokenizer_dir. */
extern const char *const qw_ckpt_tokenizer_files[];

/* Save P (weights), M and V (AdamW first and second moments, P's layout)
 * and s as OUT/step-<s->step> (s->step ≥ 0, else QW_EXIT_USAGE).  Pruning keeps the directory just written
 * and the keep_last − 1 others with the highest step numbers.  On success
 * *dir (if dir is not NULL) is the new directory's path (caller frees).
 * P, M, V may live on a device (qw_params_to_device): they are downloaded
 * one arena at a time. */
int qw_ckpt_save(const qw_ckpt_opts *o, const qw_params *P, const qw_params *M, const qw_params *V,
                 const qw_train_state *s, char **dir);

/* Resolve a --resume argument: a step directory (holding
 * trainer_state/state.json) or an OUT directory (through OUT/latest).
 * *dir is the step directory (caller frees). */
int qw_ckpt_resolve(const char *path, char **dir);

/* The directory OUT/latest names (OUT/step-NNNNNN, or its aside copy
 * OUT/.step-NNNNNN.old while a replacing save is under way: "Replacing"),
 * in *dir (caller frees); *dir = NULL and 0 when OUT has no latest.  A latest
 * that does not hold a step-NNNNNN name, or names no directory, is
 * QW_EXIT_DATA.  The one place that reads OUT/latest. */
int qw_ckpt_latest(const char *out, char **dir);

/* A model directory argument (qw-ckpt DIR, qw-pretrain --model DIR): DIR
 * itself when it holds config.json, else the directory DIR/latest names
 * when there is one (a training --out directory), else DIR. */
int qw_ckpt_model_dir(const char *path, char **dir);

/* Test hook: called (when set) after each rename of the fallback sequence
 * of "Replacing", with "aside" or "installed"; a nonzero return stops the
 * save there, as a crash would (returned as the save's status). */
extern int (*qw_ckpt_install_hook)(const char *stage);

/* Load a step directory into P, M, V (host arenas, already initialised
 * with the run's config, e.g. by qw_params_init and qw_params_alloc_like;
 * move them to a device afterwards) and s (filled;
 * free with qw_train_state_free).  The checkpoint's config.json must agree
 * with P->cfg on every field that shapes or computes the model, else
 * QW_EXIT_DATA naming the field. */
int qw_ckpt_load(const char *dir, qw_params *P, qw_params *M, qw_params *V, qw_train_state *s);

/* A qw_rng as JSON, exactly: {"seed", "stream", "counter": 16 hex digits,
 * "buf": [4 × 8 hex digits], "used": 0..4, "has_spare": 0|1, "spare": the
 * double's 64 bits as 16 hex digits}.  For state.json's "rng" (one such
 * object per generator, under names the program chooses).  Parsing
 * anything else is QW_EXIT_DATA naming `where` (e.g. the file and key). */
cJSON *qw_ckpt_rng_json(const qw_rng *r);
int qw_ckpt_rng_parse(const cJSON *j, const char *where, qw_rng *r);

#endif
