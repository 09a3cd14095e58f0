/* qw/size.h — sizes computed from options, file headers and configs.
 *
 * Every count of rows, tokens, elements or bytes that a user or a file can
 * make large is computed with these checked operations, never with a bare
 * `*` that may wrap (or an int cast that may trap): the caller turns an
 * overflow into a usage error (2) or bad data (3) naming the option, file
 * or field.  Allocations that a value can make huge are compared with
 * qw_phys_mem_bytes() first, so that they fail with a message instead of
 * being killed by the out-of-memory killer.
 */
#ifndef QW_SIZE_H
#define QW_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* *out = a·b; returns 1 (and *out unspecified) when the product does not
 * fit the type, else 0.  Negative factors are allowed for the int64 form. */
static inline int qw_mul_size(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline int qw_mul_i64(int64_t a, int64_t b, int64_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline int qw_add_i64(int64_t a, int64_t b, int64_t *out) { return __builtin_add_overflow(a, b, out); }

/* Bytes of physical memory of this machine (0 when unknown). */
uint64_t qw_phys_mem_bytes(void);

#endif
