/* qw/tokenize.h — encode every document of an input (or do other work on
 * it), in parallel, and hand the ids to a sink in input order.
 *
 * Documents are read in batches (one thread reads the next batch while the
 * others encode the current one) and encoded by qw_tok_encode on several
 * threads; the sink is called on the calling thread, once per document, in
 * the order of the input, so the output does not depend on the thread
 * count.
 */
#ifndef QW_TOKENIZE_H
#define QW_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "qw/io.h"
#include "qw/tok.h"

/* Work done on each document on the worker threads instead of encoding
 * (e.g. feeding a BPE trainer): must be thread-safe; may leave *ids empty.
 * Returns 0, or QW_EXIT_* after qw_error (QW_EXIT_DATA for a bad document). */
typedef int (*qw_tokenize_work)(const char *text, size_t len, qw_ids *ids, void *ctx);

typedef struct {
    const qw_tok *tok;       /* the tokenizer, unless `work` is given */
    int threads;             /* encoding threads; 0: qw_thread_count() */
    int32_t eos;             /* >= 0: this id is appended to every document (a target:
                                mask 1 when the document has a loss mask) */
    int skip_bad;            /* 1: skip documents that fail to encode (invalid UTF-8), counting them */
    size_t batch_bytes;      /* text per batch; 0: 1 MiB (a batch holds 1 to 4096 documents) */
    qw_tokenize_work work;   /* NULL: encode with tok (and append eos) */
    void *work_ctx;
} qw_tokenize_opts;

/* Called for each document in input order; `doc->text` is the document's
 * text.  A document with loss spans (doc->spans not NULL: chat mode,
 * qw/io.h) is encoded by qw_tok_encode_mask and `mask` holds a byte per id
 * (1: a token the loss counts); otherwise, and with `work`, mask is NULL.
 * Return 0 to go on, or an error status (after qw_error) to stop. */
typedef int (*qw_tokenize_sink)(const qw_doc *doc, const int32_t *ids, const uint8_t *mask, size_t n, void *ctx);

typedef struct {
    uint64_t docs;           /* documents given to the sink */
    uint64_t tokens;         /* ids given to the sink (eos included) */
    uint64_t bytes;          /* text bytes of those documents */
    long skipped;            /* documents skipped by skip_bad (encoding or work failures only) */
} qw_tokenize_stats;

/* Encode all of `in`.  Fails with the input's error, an encoding error
 * prefixed by the document's name and line ("'c.jsonl': line 3: invalid
 * UTF-8 at byte 7"), or the sink's error; documents before the failing one
 * have been given to the sink.  *stats (may be NULL) is filled either way. */
int qw_tokenize(qw_input *in, const qw_tokenize_opts *opts, qw_tokenize_sink sink, void *ctx,
                qw_tokenize_stats *stats);

/* A tokenizer argument (--tokenizer of every program): a tokenizer.json
 * file, or a directory holding one (a model or checkpoint directory).
 * Returns the path of the tokenizer.json (caller frees); *dir, when dir is
 * not NULL, gets the directory holding it (caller frees), where the other
 * tokenizer files (tokenizer_config.json …) sit.  Nothing is opened: a
 * missing file fails later, in qw_tok_load. */
char *qw_tok_path(const char *arg, char **dir);

/* qw_tok_load of qw_tok_path(arg): the one way programs load --tokenizer. */
int qw_tok_load_arg(const char *arg, qw_tok **t);

#endif
