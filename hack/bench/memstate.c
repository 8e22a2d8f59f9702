/* memstate: the benchmarks' stateful app (issue 18) — it holds its state in its own ANONYMOUS
 * process memory (not a tmpfs file), keeps changing part of it, and counts like the demo's
 * counter, so a checkpoint's cost and what a restore lost can both be measured.
 *
 *   memstate MIB [PERCENT_PER_SECOND] [BLOCK_KIB]
 *
 * - allocates MIB MiB with mmap(MAP_PRIVATE|MAP_ANONYMOUS) and fills it with pseudo-random bytes
 *   (incompressible, so nothing dedupes or compresses away what CRIU dumps);
 * - every 100 ms: count += 1, written atomically to /tmp/count (as the counter: runc-pod.sh count
 *   reads it), and PERCENT_PER_SECOND / 10 % of the memory rewritten with new random bytes, in
 *   random BLOCK_KIB-sized blocks (default 64 KiB) — a workload whose changes are scattered but
 *   not byte-sized;
 * - each block starts with a header (magic, block index, version, count at write) so a restored
 *   process's memory can be checked for consistency (`memstate --verify` is not needed: the
 *   process itself checks every block it rewrites and exits 3 on a corrupt header).
 *
 * Static binary (gcc -static -O2), copied into the busybox rootfs by hack/runc-pod.sh --app memstate.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x6d656d7374617465ULL /* "memstate" */

struct header {
    uint64_t magic, index, version, count;
};

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void) { /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

static void fill(unsigned char *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = next();
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] = (unsigned char)next();
}

static void write_count(uint64_t count) {
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)count);
    int fd = open("/tmp/count.new", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    if (write(fd, buf, (size_t)len) != len) { close(fd); return; }
    close(fd);
    rename("/tmp/count.new", "/tmp/count");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: memstate MIB [PERCENT_PER_SECOND] [BLOCK_KIB]\n");
        return 2;
    }
    size_t mib = strtoull(argv[1], NULL, 10);
    double pct = argc > 2 ? strtod(argv[2], NULL) : 2.0;
    size_t block = (argc > 3 ? strtoull(argv[3], NULL, 10) : 64) * 1024;
    if (block < sizeof(struct header) || mib == 0) {
        fprintf(stderr, "memstate: bad size\n");
        return 2;
    }
    size_t size = mib << 20, blocks = size / block;
    rng ^= (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        fprintf(stderr, "memstate: mmap %zu MiB: %s\n", mib, strerror(errno));
        return 1;
    }
    for (size_t b = 0; b < blocks; b++) {
        fill(mem + b * block, block);
        struct header h = {MAGIC, b, 0, 0};
        memcpy(mem + b * block, &h, sizeof h);
    }
    /* Blocks rewritten per 100 ms tick, with the fraction carried over so low rates still happen. */
    double per_tick = (double)blocks * pct / 100.0 / 10.0, carry = 0;
    uint64_t count = 0;
    struct timespec tick = {0, 100 * 1000 * 1000};
    for (;;) {
        count++;
        write_count(count);
        printf("count %llu\n", (unsigned long long)count);
        fflush(stdout);
        carry += per_tick;
        while (carry >= 1.0) {
            carry -= 1.0;
            size_t b = (size_t)(next() % blocks);
            struct header h;
            memcpy(&h, mem + b * block, sizeof h);
            if (h.magic != MAGIC || h.index != b) {
                fprintf(stderr, "memstate: block %zu corrupt (magic %llx index %llu)\n", b,
                        (unsigned long long)h.magic, (unsigned long long)h.index);
                return 3;
            }
            fill(mem + b * block, block);
            h.version++;
            h.count = count;
            memcpy(mem + b * block, &h, sizeof h);
        }
        nanosleep(&tick, NULL);
    }
}
