/* qw/vldata.h — image-text samples for Qwen3-VL: reading them (chat JSONL
 * whose messages hold image parts, webdataset tar shards), turning their
 * images into the tower's inputs, and expanding each image's pad token to
 * the number of merged patches, as the Qwen3-VL processor does.
 *
 * Sources (qw_vl_reader):
 *   chat JSONL   records as qw/io.h's chat mode reads them (a file, a
 *                compressed file, a directory, standard input); the image
 *                parts' paths are relative to the directory of the file
 *                they appear in (for a member of an archive: of the
 *                archive), absolute paths as they are.
 *   webdataset   a tar (.tar, .tar.gz, .tgz, .tar.zst, .tar.xz, .tar.bz2)
 *                whose members are grouped into samples by key, the member
 *                name up to the first '.' of its last component
 *                ("d/000.jpg" and "d/000.json" are sample "d/000"); the
 *                members of a sample are consecutive, as webdataset writes
 *                them.  KEY.json holds one JSON object with `messages` (the
 *                conversation); KEY.png / KEY.jpg / KEY.jpeg are its
 *                images.  An image part names its member by extension
 *                ("png"), by member name ("000.png") or not at all (the
 *                sample's only image).  Other members are ignored.
 * The conversation is rendered with qw/chat.h (no generation prompt); the
 * loss spans are the assistant turns (or a string completion), as in
 * qw/io.h's chat mode.
 *
 * Ownership: a sample's pointers belong to the reader and stay valid until
 * the next qw_vl_reader_next.  qw_vl_images owns its arrays.
 *
 * Errors: 0 or QW_EXIT_* with a message naming the sample
 * ("'a.jsonl': line 3: ...", "'s.tar': sample '000': ...") (qw/cli.h):
 * QW_EXIT_DATA for bad records, a missing image file or member, a tar
 * sample without its .json, undecodable images (qw/image.h's reasons),
 * pad tokens that do not match the images; QW_EXIT_FAIL for I/O errors.
 * A bad sample does not end the reader: qw_vl_reader_next may be called
 * again to go on with the next one (what --skip-bad does), except after a
 * corrupt archive or compressed stream, which ends it.
 */
#ifndef QW_VLDATA_H
#define QW_VLDATA_H

#include <stddef.h>
#include <stdint.h>

#include "qw/buf.h"
#include "qw/config.h"
#include "qw/image.h"
#include "qw/model.h"
#include "qw/params.h"
#include "qw/vision.h"

/* The images of one sample (or one batch row), in the order of their pad
 * runs: grid (t, h, w) in patches, the offset of each image's first pad
 * token, and the patches of all of them concatenated: rows Σ t·h·w of K =
 * qw_vision_row_len floats (qw-eval pixels' pixel_values).  Zero-initialise;
 * free with qw_vl_images_free. */
typedef struct {
    int n;
    int32_t *thw;              /* [n][3] */
    int32_t *start;            /* [n] token offsets (qw_vl_expand sets them) */
    float *pixels;             /* [rows][K] */
    int64_t rows;
    int K;
    int cap;
    int64_t rows_cap;
} qw_vl_images;

void qw_vl_images_free(qw_vl_images *im);
void qw_vl_images_clear(qw_vl_images *im);   /* keep the memory, drop the images */
/* Append image i of `src` (its grid, start and patches). */
void qw_vl_images_append(qw_vl_images *im, const qw_vl_images *src, int i, int32_t start);
/* Decode an encoded PNG/JPEG (`name` in messages), run the processor
 * (qw_vision_preprocess) and append the image. */
int qw_vl_images_add(qw_vl_images *im, const qw_vision_prep *p, const void *data, size_t n, const char *name);
/* The same from a file. */
int qw_vl_images_load(qw_vl_images *im, const qw_vision_prep *p, const char *path);

/* The processor settings for a model: DIR/preprocessor_config.json when
 * `dir` is a directory holding one, else the defaults; patch_size,
 * temporal_patch_size and merge_size then come from c's vision_config (so
 * the patches fit the tower). */
int qw_vl_prep(const qw_config *c, const char *dir, qw_vision_prep *p);

/* Expand every image pad token (c->image_token_id) of ids into
 * t·h·w/merge² copies for the image of its turn (the k-th pad token is
 * image k), and the mask alike with 0 (images are never predicted; mask
 * may be NULL); sets im->start.  The number of pad tokens must be im->n
 * (QW_EXIT_DATA naming `what` otherwise: text that spells
 * <|image_pad|> itself). */
int qw_vl_expand(const qw_config *c, qw_vl_images *im, qw_ids *ids, qw_buf *mask, const char *what);

/* ---- a batch with images, for the model (qw/model.h) ---- */

/* What a Qwen3-VL batch needs besides its tokens: the MRoPE position ids of
 * every token (qw_rope_index_docs: per document), the vision tower run on
 * the batch's images (qw/vision.h), the rows of the image tokens, and the
 * buffers the model's backward fills for the tower's.  Host memory (the
 * tower runs on the CPU). */
typedef struct qw_vl_batch qw_vl_batch;

/* For ids [B·T] (seg: document ids, or NULL for one per row) whose image
 * pad runs are, in order, the n images of grids thw [n][3] with patches
 * pixels [Σ t·h·w][K] (K = the config's 3·tp·p²; copied).  n = 0 gives the
 * position ids only.  Runs the tower's forward.  QW_EXIT_DATA naming
 * `what` when the pad runs and the grids disagree, a grid is odd, or the
 * model has no vision tower while n > 0. */
int qw_vl_batch_new(const qw_params *P, const int32_t *ids, const int32_t *seg, int B, int T, int n,
                    const int32_t *thw, const float *pixels, const char *what, qw_vl_batch **out);
/* MRoPE position ids [3][B·T] (qw_batch.mpos). */
const int32_t *qw_vl_batch_mpos(const qw_vl_batch *b);
/* The image inputs (qw_batch.vision), or NULL without images. */
const qw_batch_vision *qw_vl_batch_vision(const qw_vl_batch *b);
/* The tower (its intermediates), or NULL without images. */
const qw_vision *qw_vl_batch_tower(const qw_vl_batch *b);
/* After the model's backward of this batch: ADD the tower's gradient to G
 * (host arena of P's layout). */
void qw_vl_batch_backward(qw_vl_batch *b, qw_params *G);
void qw_vl_batch_free(qw_vl_batch *b);

/* ---- reading samples ---- */

typedef struct {
    const char *text;          /* the rendered conversation */
    size_t len;
    const size_t *spans;       /* n_spans byte ranges the loss counts (pairs) */
    size_t n_spans;
    const char *where;         /* "'a.jsonl': line 3" or "'s.tar': sample '000'" */
    int n_images;
    /* image k: its name in messages and its encoded bytes */
    const char *const *image_name;
    const unsigned char *const *image_data;
    const size_t *image_size;
} qw_vl_sample;

typedef struct qw_vl_reader qw_vl_reader;

/* Over `paths` (n ≥ 1; "-" is standard input, as JSONL).  skip_bad skips
 * records that are not valid conversations (qw/io.h's skip_bad). */
int qw_vl_reader_open(const char *const *paths, int n, int skip_bad, qw_vl_reader **out);
/* 1 and a sample, 0 at the end, or an error (see above). */
int qw_vl_reader_next(qw_vl_reader *r, qw_vl_sample *s);
/* Records skipped as bad by the JSONL reader. */
long qw_vl_reader_skipped(const qw_vl_reader *r);
void qw_vl_reader_free(qw_vl_reader *r);

#endif
