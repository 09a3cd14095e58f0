/* test_hash.c — CRC-32C check value, incremental use, FNV-1a vectors. */
#include "qwtest.h"
#include "qw/hash.h"

TEST(crc32c_check_value)
{
    CHECK(qw_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(qw_crc32c(0, "", 0) == 0);
}

TEST(crc32c_incremental_equals_whole)
{
    char buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (char)(i * 7 + 3);
    uint32_t whole = qw_crc32c(0, buf, sizeof buf);
    uint32_t part = qw_crc32c(qw_crc32c(0, buf, 333), buf + 333, 667);
    CHECK(whole == part);
    buf[500] ^= 1;
    CHECK(qw_crc32c(0, buf, sizeof buf) != whole);
}

TEST(fnv1a64_vectors)
{
    CHECK(qw_hash64(QW_HASH64_INIT, "", 0) == 0xcbf29ce484222325ULL);
    CHECK(qw_hash64(QW_HASH64_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    CHECK(qw_hash64(QW_HASH64_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
}

int main(void)
{
    PLAN(3);
    RUN(crc32c_check_value);
    RUN(crc32c_incremental_equals_whole);
    RUN(fnv1a64_vectors);
    return qwtest_finish();
}
