/* qw/io.h — reading input documents from files, directories, compressed
 * files and archives, through libarchive.
 *
 * An input is a list of paths, read in order:
 *   "-"            standard input (also when the list is empty);
 *   a regular file plain, or compressed (.gz .zst .xz .bz2 .lz4 …: detected
 *                  by content, not by name), or an archive (tar, cpio, zip,
 *                  7z, possibly compressed: tar.gz, tar.zst …), whose
 *                  regular members are read one after another, in archive
 *                  order; a member may itself be compressed (a .jsonl.zst
 *                  inside a tar), but is not opened as a nested archive;
 *   a directory    every file below it, recursively, in byte order of the
 *                  names within each directory; names starting with '.' are
 *                  skipped.  A directory of .jsonl.zst shards just works.
 *
 * Each file (or archive member) gives documents:
 *   text mode      the whole file is one document (an empty file is one
 *                  empty document), held in memory whole;
 *   line mode      each line (without its '\n') is a document;
 *   JSONL mode     each non-blank line is a JSON object; the document is its
 *                  string field `field` ("text" by default);
 *   chat mode      each non-blank line is a JSON object whose array field
 *                  `field` ("messages" by default) is a conversation, and
 *                  whose optional `tools` lists tool schemas; the document
 *                  is the conversation rendered with Qwen3's chat template
 *                  (qw/chat.h, no generation prompt), and its loss spans
 *                  are the assistant turns (qw_chat_span: the content,
 *                  reasoning and tool calls through "<|im_end|>").  A record
 *                  without that field but with `prompt` and `completion`
 *                  (TRL's prompt-completion layout) is read too: two
 *                  strings give the text prompt + completion with the
 *                  completion as the span; two lists of messages are
 *                  rendered as one conversation (the completion must start
 *                  with an assistant message) and the span runs from that
 *                  message's content to the end of the text, the final
 *                  newline included, as TRL's completion mask does.
 *                  User and system content may be a list of text and image
 *                  parts (qw/chat.h); the image parts' paths come with
 *                  the document (qw_doc.images) for a caller that loads
 *                  them (qw-pack with a vision model).
 * In line, JSONL and chat modes lines are streamed: memory holds one line at a
 * time, however long; the last line needs no '\n'.
 *
 * Names in messages are the path as given, or "archive.tar:member.jsonl"
 * for a member.  Errors:
 *   QW_EXIT_FAIL   a path cannot be opened or read (the OS reason);
 *   QW_EXIT_DATA   corrupt or truncated compressed data or archive, and in
 *                  JSONL mode a line that is not JSON, not an object, lacks
 *                  the field, or whose field is not a string, or has a
 *                  "\u0000" escape (C strings cannot hold it), e.g.
 *                  'corpus.jsonl': line 17: missing field 'text'
 *                  and in chat mode a conversation the template refuses.
 * With skip_bad, bad records are skipped and counted instead
 * (qw_input_skipped); corrupt compressed data is never skipped.
 *
 * Not thread-safe: one thread iterates an input.
 */
#ifndef QW_IO_H
#define QW_IO_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QW_INPUT_TEXT,          /* a file is a document */
    QW_INPUT_LINES,         /* a line is a document */
    QW_INPUT_JSONL,         /* a line is a JSON record */
    QW_INPUT_CHAT,          /* a line is a JSON record holding a conversation */
} qw_input_mode;

typedef struct {
    qw_input_mode mode;
    const char *field;      /* the record's field; NULL: "text" (JSONL), "messages" (chat) */
    int skip_bad;           /* 1: skip and count bad records */
} qw_input_opts;

/* One document, as returned by qw_input_next.  All pointers are owned by the
 * input and stay valid until the next call to qw_input_next or qw_input_free. */
typedef struct {
    const char *text;       /* the document's bytes (not validated as UTF-8) */
    size_t len;
    const char *name;       /* "corpus.jsonl", "shards.tar:part-0.jsonl.zst", "-" */
    long line;              /* 1-based line number in `name`; text mode: 0 */
    long index;             /* 0-based number of the document in the whole input */
    const size_t *spans;    /* chat mode: n_spans byte ranges [spans[2k], spans[2k+1]) of
                               the text a model learns to produce (the loss spans), in
                               order; not NULL in chat mode (also when n_spans is 0),
                               NULL in the other modes */
    size_t n_spans;
    const char *const *images; /* chat mode: the paths of the conversation's image parts in
                                  the order they render (qw/chat.h; an entry is NULL for a
                                  part without a path); NULL in the other modes */
    size_t n_images;
} qw_doc;

typedef struct qw_input qw_input;

/* Check every path (it exists; directories are listed now, so later files
 * appearing do not count) and make an input over them.  `paths` may be
 * empty (n == 0: standard input); the strings must outlive the input.
 * Returns 0 and sets *out, or QW_EXIT_FAIL with a message.  Free with
 * qw_input_free. */
int qw_input_open(const char *const *paths, int n, const qw_input_opts *opts, qw_input **out);
void qw_input_free(qw_input *in);

/* The next document: returns 1 and fills *doc, 0 at the end of the input,
 * or QW_EXIT_DATA / QW_EXIT_FAIL with a message (the input is then done). */
int qw_input_next(qw_input *in, qw_doc *doc);

/* Bad records skipped so far (skip_bad). */
long qw_input_skipped(const qw_input *in);

/* Progress in bytes as read from the paths (compressed bytes for compressed
 * files): *done so far, *total the sum of the regular files' sizes, or 0
 * when unknown (standard input or a pipe among the paths). */
void qw_input_progress(const qw_input *in, uint64_t *done, uint64_t *total);

#endif
