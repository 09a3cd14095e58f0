/* qw/hash.h — checksums and hashes for file formats and identities.
 *
 * qw_crc32c: CRC-32C (Castagnoli, reflected, init and final xor ~0), the
 * checksum of every qw frame format.  Incremental: pass the previous value
 * (0 to start) as `crc`.  qw_crc32c(0, "123456789", 9) == 0xE3069283.
 *
 * qw_hash64: FNV-1a 64-bit, for identities (e.g. of a tokenizer), not for
 * security.  Incremental: start from QW_HASH64_INIT.
 */
#ifndef QW_HASH_H
#define QW_HASH_H

#include <stddef.h>
#include <stdint.h>

uint32_t qw_crc32c(uint32_t crc, const void *data, size_t n);

#define QW_HASH64_INIT 0xcbf29ce484222325ULL
uint64_t qw_hash64(uint64_t h, const void *data, size_t n);

#endif
