/* qw/metrics.h — training metrics: a JSONL log and a TensorBoard event file.
 *
 * A record is a step number and a list of (key, value) pairs.  Training
 * programs write one record per optimizer step with at least step, loss,
 * lr, grad_norm, tokens, tok_per_s (and aux_loss for MoE; no mfu yet);
 * validation records carry val_loss and no loss (qw-metrics(5),
 * doc/design.md).  This module does not enforce the key set: it writes what
 * it is given, in the order given.  In a multi-rank run only rank 0 should
 * open a writer.
 *
 * JSONL: one JSON object per line, {"step":N,"key":value,...}, flushed
 * after every line so `tail -f` and a killed run see whole lines.  A value
 * that is an integer of magnitude below 2^53 is printed as an integer
 * ("tokens":1048576); any other finite value with %.9g (enough to round-trip
 * a float32); NaN and ±inf, which JSON lacks, as null.  The file is opened
 * for appending, so a resumed run continues its log.
 *
 * TensorBoard: a file `events.out.tfevents.<unix seconds>.<hostname>` in
 * the given directory (created if missing; `.<pid>` is appended if that
 * name exists).  It is a sequence of TFRecords — u64 length, u32 masked
 * CRC-32C of the 8 length bytes, the data, u32 masked CRC-32C of the data,
 * all little-endian, mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 — each
 * holding one tensorflow.Event protobuf: wall_time (field 1, double), step
 * (field 2, int64), and either file_version (field 3, "brain.Event:2", the
 * first record only) or summary (field 5) with one Summary.Value per key:
 * tag (field 1, the key) and simple_value (field 2, float32).  Every
 * record is flushed when written.
 *
 * Keys: 1 to 63 characters from [A-Za-z0-9_./-], not "step"; anything
 * else is QW_EXIT_USAGE (a programming error in the caller).
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h); failing to create or
 * write a file is QW_EXIT_FAIL naming the file.
 */
#ifndef QW_METRICS_H
#define QW_METRICS_H

typedef struct qw_metrics qw_metrics;

typedef struct {
    const char *key;
    double value;
} qw_metric;

/* Open the writers: jsonl is a file path, "-" for stdout, or NULL for no
 * JSONL; tbdir a directory for the event file, or NULL for none. */
int qw_metrics_open(qw_metrics **out, const char *jsonl, const char *tbdir);
/* Write one record to every open writer. */
int qw_metrics_write(qw_metrics *m, long step, const qw_metric *v, int n);
/* The event file's path, or NULL without TensorBoard output. */
const char *qw_metrics_tb_path(const qw_metrics *m);
/* For a resumed run: drop the records of a JSONL log whose "step" is
 * larger than max_step (written by the earlier run after the checkpoint it
 * resumes from), so the log holds each step once.  Rewrites the file
 * atomically; a missing file is not an error.  Lines that are not JSON
 * objects with a numeric "step" are QW_EXIT_DATA naming the line. */
int qw_metrics_truncate(const char *jsonl, long max_step);
/* A metrics JSONL file read back whole, as a table: one row per record,
 * one column per numeric key (first-seen order; "step" is not a column).
 * val[r·nkeys + k] is record r's value of key k, NAN where the record has
 * no such key or a null there; keys with other JSON types are ignored.
 * Blank lines are skipped; a line that is not a JSON object with a numeric
 * "step" is QW_EXIT_DATA naming the line ("'m.jsonl': line 7: ..."). */
typedef struct {
    int nkeys, nrec;
    char **keys;
    double *step;   /* [nrec] */
    double *val;    /* [nrec × nkeys] */
} qw_metrics_log;
int qw_metrics_read(const char *jsonl, qw_metrics_log *out);
void qw_metrics_log_free(qw_metrics_log *log);
/* Append b's records to a (keys united, NAN where a record lacks one),
 * their steps plus step_offset: stages of one run joined. */
void qw_metrics_log_append(qw_metrics_log *a, const qw_metrics_log *b, double step_offset);
/* The column of a key, or -1. */
int qw_metrics_log_key(const qw_metrics_log *log, const char *key);

/* Close and free (NULL is a no-op); reports a failed final flush. */
int qw_metrics_close(qw_metrics *m);

#endif
