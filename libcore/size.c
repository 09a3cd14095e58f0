/* size.c — qw/size.h. */
#include "qw/size.h"

#include <unistd.h>

uint64_t qw_phys_mem_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return 0;
    uint64_t n;
    return __builtin_mul_overflow((uint64_t)pages, (uint64_t)page, &n) ? UINT64_MAX : n;
}
