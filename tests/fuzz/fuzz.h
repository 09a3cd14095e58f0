/* fuzz.h — what every tests/fuzz/fuzz_*.c shares (doc/fuzzing.md).
 *
 * A target is one libFuzzer program: LLVMFuzzerTestOneInput gets bytes and
 * feeds them through the libcore entry points the programs use.  Where the
 * API takes a path, the bytes go to a file in a private directory
 * (fz_dir); where it takes a FILE, to a memory stream (fz_memfile).
 *
 * The contract being tested: whatever the bytes, libcore returns 0 or an
 * error status with a message that names the file (qw/cli.h), and never
 * crashes, leaks, overflows, reads out of bounds, exits or allocates
 * without bound.  fz_expect aborts on any other answer, which libFuzzer
 * reports as a crash and saves as an artifact; the sanitizers report the
 * rest.
 *
 * Formats with checksums (qw-tokens frames, qw-pack shards) are read twice
 * by their targets: as given, then, when that failed on a checksum, with
 * the checksums recomputed (fz_crc32c), so that mutations reach the code
 * behind the checks.
 */
#ifndef QW_FUZZ_H
#define QW_FUZZ_H

#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/hash.h"
#include "qw/tok.h"

/* Error statuses a call may return, for fz_expect. */
#define FZ_DATA (1u << QW_EXIT_DATA)
#define FZ_FAIL (1u << QW_EXIT_FAIL)
#define FZ_USAGE (1u << QW_EXIT_USAGE)

/* Bound on the rows, documents or tensors a target walks per input, so
 * that one input cannot take seconds. */
#define FZ_MAX_ITEMS 4096

/* ---- little-endian fields ---- */

static inline uint32_t fz_get16(const unsigned char *p) { return p[0] | (uint32_t)p[1] << 8; }
static inline uint32_t fz_get32(const unsigned char *p) { return fz_get16(p) | fz_get16(p + 2) << 16; }
static inline uint64_t fz_get64(const unsigned char *p) { return fz_get32(p) | (uint64_t)fz_get32(p + 4) << 32; }
static inline void fz_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* CRC-32C of p[off, off + n) when that lies inside a buffer of `size`
 * bytes, else 0: for recomputing a checksum over a range a header names. */
static inline uint32_t fz_crc32c(const unsigned char *p, size_t size, uint64_t off, uint64_t n)
{
    return off <= size && n <= size - off ? qw_crc32c(0, p + off, (size_t)n) : 0;
}

/* ---- the contract ---- */

static inline void fz_fatal(const char *what, int rc)
{
    fprintf(stderr, "fuzz: %s (status %d, message '%s')\n", what, rc, qw_error_msg());
    abort();
}

/* rc is 0, or one of the `allowed` statuses with a message that mentions
 * `subject` (the file, or the record prefix the caller gave). */
static inline void fz_expect(int rc, unsigned allowed, const char *subject)
{
    if (rc == 0) return;
    if (rc < 0 || rc > 31 || !(allowed & (1u << rc))) fz_fatal("unexpected status", rc);
    if (!*qw_error_msg()) fz_fatal("an error without a message", rc);
    if (subject && !strstr(qw_error_msg(), subject)) fz_fatal("the message does not name the input", rc);
}

/* ---- files ---- */

static char fz_dir_path[256];

static inline int fz_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

static inline void fz_cleanup(void)
{
    if (fz_dir_path[0] && !getenv("QW_FUZZ_KEEP")) nftw(fz_dir_path, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* The process's private directory ($TMPDIR/qw-fuzz.XXXXXX), made on first
 * use and removed at exit (kept when QW_FUZZ_KEEP is set, to look at what a
 * target wrote). */
static inline const char *fz_dir(void)
{
    if (!fz_dir_path[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fz_dir_path, sizeof fz_dir_path, "%s/qw-fuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fz_dir_path)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fz_cleanup);
    }
    return fz_dir_path;
}

/* fz_dir()/name, allocated once by the caller (at initialisation). */
static inline char *fz_path(const char *name) { return qw_path_join(fz_dir(), name); }

/* Replace the file at path with data[0, n).  A new file each time: ext4
 * flushes a file truncated and rewritten at close (auto_da_alloc), which
 * made a target wait on the disk. */
static inline void fz_write(const char *path, const void *data, size_t n)
{
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
        perror(path);
        abort();
    }
}

/* When QW_FUZZ_SEEDS names a directory, copy the file at path into it as
 * seed-NAME (NAME: the file's own name): for a target whose input replaces
 * a file that its start-up made, that file as made is the natural seed
 * (tests/fuzz/seeds.sh). */
static inline void fz_save_seed(const char *path)
{
    const char *to = getenv("QW_FUZZ_SEEDS"), *name = strrchr(path, '/');
    if (!to) return;
    qw_buf b = {0};
    if (qw_read_file(path, &b, NULL)) fz_fatal("reading the seed", 1);
    char *seed = qw_malloc(strlen(to) + strlen(name) + 8);
    sprintf(seed, "%s/seed-%s", to, name + 1);
    fz_write(seed, b.p, b.n);
    free(seed);
    qw_buf_free(&b);
}

/* A read-only stream over data[0, n) (n may be 0); fclose it. */
static inline FILE *fz_memfile(const void *data, size_t n)
{
    FILE *f = n ? fmemopen((void *)data, n, "rb") : fopen("/dev/null", "rb");
    if (!f) {
        perror("fuzz: fmemopen");
        abort();
    }
    return f;
}

/* ---- a small tokenizer ---- */

/* A byte-level BPE with Qwen3's special tokens and a few hundred merges,
 * trained on first use by qw_tok_trainer (in fz_dir()/tok) and kept for the
 * life of the process: for targets that encode or decode. */
static inline qw_tok *fz_tokenizer(void)
{
    static qw_tok *tok;
    if (tok) return tok;
    static const char *const text[] = {
        "The quick brown fox jumps over the lazy dog. 0123456789 + 42 = 4242\n",
        "def add(a, b):\n    return a + b  # sums\n",
        "Ünïcödé: naïve café, 日本語のテキスト, Ελληνικά, emoji 🙂 and tabs\t\there.\n",
        "<think>\nreasoning goes here\n</think>\n\nthe answer is 7.\n",
    };
    qw_tok_trainer *tr = qw_tok_trainer_new();
    for (int rep = 0; rep < 4; rep++)
        for (size_t i = 0; i < sizeof text / sizeof *text; i++)
            if (qw_tok_trainer_feed(tr, text[i], strlen(text[i]))) fz_fatal("training the tokenizer", 1);
    char *dir = fz_path("tok"), *json = qw_path_join(dir, "tokenizer.json");
    qw_tok_train_opts o = {256 + 26 + 200, 1, NULL, 0};
    if (qw_tok_trainer_finish(tr, &o, dir) || qw_tok_load(json, &tok)) fz_fatal("training the tokenizer", 1);
    qw_tok_trainer_free(tr);
    free(dir);
    free(json);
    return tok;
}

#endif
