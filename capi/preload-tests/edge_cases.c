/*
 * Edge cases of the C allocation interface, asserted with glibc's semantics.
 *
 * Run under LD_PRELOAD=liblifeboat_capi.so with --expect-lifeboat: every
 * check runs, including those where lifeboat follows newer standards than
 * the system's glibc (aligned_alloc rejecting bad alignments as glibc 2.38
 * does; posix_memalign never touching errno). Run without preload, it checks
 * the test itself against the system allocator (those checks are skipped).
 *
 * Prints one line per failed check and ends with
 * "edge_cases: N passed, M failed"; exits 1 if any check failed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/mman.h>
#include <unistd.h>

/* The failed-realloc checks read the block after realloc returned NULL,
 * which is valid; GCC 12+ warns about it anyway. */
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wuse-after-free"

static int passed, failed;
static int lifeboat; /* the lifeboat C ABI is the process allocator */

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (cond) {                                                         \
            passed++;                                                       \
        } else {                                                            \
            failed++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

static int is_aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

static void fill(void *p, size_t n, unsigned seed) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(seed + i * 7);
}

static int holds(const void *p, size_t n, unsigned seed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

static size_t natural_align(size_t size) { return size >= 16 ? 16 : 8; }

/* Defeat the compiler's knowledge of malloc's semantics (it may fold
 * malloc(SIZE_MAX) == NULL or drop a malloc/free pair). */
static size_t vsize(size_t s) { return *(volatile size_t *)&s; }

static void test_malloc(void) {
    void *a = malloc(vsize(0)), *b = malloc(vsize(0));
    CHECK(a && b && a != b, "malloc(0) must give unique non-null pointers: %p %p", a, b);
    free(a);
    free(b);
    free(NULL);

    static const size_t sizes[] = {1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 100,
                                   127, 255, 256, 257, 1000, 1024, 1025, 4095, 4096, 4097,
                                   10000, 32768, 32769, 65536, 100000, 1 << 20, (1 << 22) + 1,
                                   10 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        errno = 1234;
        unsigned char *p = malloc(vsize(n));
        CHECK(p != NULL, "malloc(%zu)", n);
        if (!p) continue;
        CHECK(errno == 1234, "malloc(%zu) succeeded but changed errno to %d", n, errno);
        CHECK(is_aligned(p, natural_align(n)), "malloc(%zu) = %p misaligned", n, (void *)p);
        size_t us = malloc_usable_size(p);
        CHECK(us >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, us);
        fill(p, us, (unsigned)n);
        CHECK(holds(p, us, (unsigned)n), "malloc(%zu) contents", n);
        free(p);
    }
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");

    errno = 0;
    void *p = malloc(vsize(SIZE_MAX));
    CHECK(p == NULL && errno == ENOMEM, "malloc(SIZE_MAX) = %p errno %d", p, errno);
    errno = 0;
    p = malloc(vsize(SIZE_MAX / 2 + 1));
    CHECK(p == NULL && errno == ENOMEM, "malloc(SIZE_MAX/2+1) = %p errno %d", p, errno);

    /* free keeps errno (glibc >= 2.33, POSIX.1-2024) */
    p = malloc(vsize(100));
    errno = 4321;
    free(p);
    CHECK(errno == 4321, "free changed errno to %d", errno);
    p = malloc(vsize(8 << 20));
    errno = 4321;
    free(p);
    CHECK(errno == 4321, "free of a large block changed errno to %d", errno);
}

static void test_calloc(void) {
    /* Dirty some memory first so that reuse would show. */
    for (int round = 0; round < 2; round++) {
        static const size_t dims[][2] = {{1, 1}, {3, 5}, {16, 1}, {10, 100}, {1, 4096},
                                         {7, 1000}, {1, 40000}, {3, 1 << 20}, {5, 2 << 20}};
        for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
            size_t n = dims[i][0], s = dims[i][1];
            if (round == 0) {
                void *d = malloc(vsize(n * s));
                memset(d, 0xa5, n * s);
                free(d);
                continue;
            }
            unsigned char *c = calloc(vsize(n), s);
            CHECK(c != NULL, "calloc(%zu, %zu)", n, s);
            if (!c) continue;
            CHECK(is_aligned(c, natural_align(n * s)), "calloc alignment %p", (void *)c);
            int zero = 1;
            for (size_t k = 0; k < n * s; k++) zero &= c[k] == 0;
            CHECK(zero, "calloc(%zu, %zu) not zeroed", n, s);
            free(c);
        }
    }
    void *z = calloc(vsize(0), 0);
    CHECK(z != NULL, "calloc(0, 0) must be non-null");
    free(z);
    z = calloc(vsize(0), 16);
    CHECK(z != NULL, "calloc(0, 16) must be non-null");
    free(z);

    errno = 0;
    void *o = calloc(vsize(SIZE_MAX / 2), 3);
    CHECK(o == NULL && errno == ENOMEM, "calloc overflow = %p errno %d", o, errno);
    errno = 0;
    o = calloc(vsize((size_t)1 << 32), (size_t)1 << 32);
    CHECK(o == NULL && errno == ENOMEM, "calloc 2^32*2^32 = %p errno %d", o, errno);
    errno = 0;
    o = calloc(vsize(SIZE_MAX), 1);
    CHECK(o == NULL && errno == ENOMEM, "calloc(SIZE_MAX, 1) = %p errno %d", o, errno);
}

static void test_realloc(void) {
    unsigned char *p = realloc(NULL, vsize(10));
    CHECK(p != NULL, "realloc(NULL, 10)");
    fill(p, 10, 1);
    size_t have = 10;
    static const size_t chain[] = {12, 16, 24, 100, 1000, 5000, 40000, 1 << 20, 5 << 20,
                                   9 << 20, 6 << 20, 300000, 4000, 64, 20, 3, 50000, 1};
    for (size_t i = 0; i < sizeof chain / sizeof *chain; i++) {
        size_t n = chain[i];
        errno = 1234;
        unsigned char *q = realloc(p, vsize(n));
        CHECK(q != NULL, "realloc to %zu", n);
        if (!q) return;
        CHECK(errno == 1234, "realloc to %zu succeeded but changed errno to %d", n, errno);
        size_t keep = have < n ? have : n;
        CHECK(holds(q, keep, 1), "realloc to %zu lost contents", n);
        CHECK(is_aligned(q, natural_align(n)), "realloc to %zu misaligned %p", n, (void *)q);
        fill(q, n, 1);
        have = n;
        p = q;
    }
    /* failure keeps the block */
    errno = 0;
    unsigned char *q = realloc(p, vsize(SIZE_MAX - 8));
    CHECK(q == NULL && errno == ENOMEM, "realloc(p, SIZE_MAX-8) = %p errno %d", (void *)q, errno);
    CHECK(holds(p, have, 1), "failed realloc damaged the block");
    /* realloc(p, 0) frees and returns NULL (glibc) */
    errno = 0;
    q = realloc(p, vsize(0));
    CHECK(q == NULL, "realloc(p, 0) = %p, glibc returns NULL", (void *)q);
    CHECK(errno == 0, "realloc(p, 0) set errno %d", errno);
    void *r = realloc(NULL, vsize(0));
    CHECK(r != NULL, "realloc(NULL, 0) must be malloc(0)");
    free(r);

    /* reallocarray */
    p = reallocarray(NULL, vsize(10), 10);
    CHECK(p != NULL, "reallocarray(NULL, 10, 10)");
    fill(p, 100, 3);
    errno = 0;
    q = reallocarray(p, vsize(SIZE_MAX / 2), 3);
    CHECK(q == NULL && errno == ENOMEM, "reallocarray overflow = %p errno %d", (void *)q, errno);
    CHECK(holds(p, 100, 3), "reallocarray overflow damaged the block");
    q = reallocarray(p, vsize(100), 100);
    CHECK(q != NULL && holds(q, 100, 3), "reallocarray grow");
    q = reallocarray(q, vsize(0), 100);
    CHECK(q == NULL, "reallocarray(p, 0, n) frees and returns NULL");
}

static void test_posix_memalign(void) {
    void *sentinel = (void *)0x1234, *out = sentinel;
    static const size_t bad[] = {0, 1, 2, 4, 12, 24, 40, 48, 4095, 4097};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        out = sentinel;
        errno = 777;
        int rc = posix_memalign(&out, bad[i], 8);
        CHECK(rc == EINVAL, "posix_memalign(align %zu) = %d", bad[i], rc);
        CHECK(out == sentinel, "posix_memalign(align %zu) wrote *memptr", bad[i]);
        CHECK(errno == 777, "posix_memalign(align %zu) changed errno", bad[i]);
    }
    for (int shift = 3; shift <= 23; shift++) {
        size_t a = (size_t)1 << shift;
        static const size_t sizes[] = {0, 1, 8, 100, 4096, 5000, 70000};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            out = NULL;
            int rc = posix_memalign(&out, a, vsize(sizes[i]));
            CHECK(rc == 0 && out != NULL, "posix_memalign(%zu, %zu) = %d", a, sizes[i], rc);
            CHECK(is_aligned(out, a), "posix_memalign(%zu, %zu) = %p", a, sizes[i], out);
            CHECK(malloc_usable_size(out) >= sizes[i], "posix_memalign usable size");
            fill(out, sizes[i], 5);
            free(out);
        }
    }
    out = sentinel;
    errno = 777;
    int rc = posix_memalign(&out, 64, vsize(SIZE_MAX - 100));
    CHECK(rc == ENOMEM && out == sentinel, "posix_memalign huge = %d", rc);
    if (lifeboat) /* glibc sets errno here; POSIX says it should not */
        CHECK(errno == 777, "posix_memalign ENOMEM changed errno to %d", errno);
}

static void test_aligned(void) {
    long page = sysconf(_SC_PAGESIZE);
    for (int shift = 0; shift <= 22; shift++) {
        size_t a = (size_t)1 << shift;
        void *p = aligned_alloc(a, vsize(3 * a));
        CHECK(p && is_aligned(p, a), "aligned_alloc(%zu) = %p", a, p);
        free(p);
        p = memalign(a, vsize(100));
        CHECK(p && is_aligned(p, a), "memalign(%zu) = %p", a, p);
        free(p);
    }
    void *p = aligned_alloc(64, vsize(0));
    CHECK(p && is_aligned(p, 64), "aligned_alloc(64, 0) = %p", p);
    free(p);
    if (lifeboat) { /* C17 / glibc >= 2.38; the system glibc may be older */
        errno = 0;
        p = aligned_alloc(0, vsize(16));
        CHECK(p == NULL && errno == EINVAL, "aligned_alloc(0) = %p errno %d", p, errno);
        errno = 0;
        p = aligned_alloc(24, vsize(48));
        CHECK(p == NULL && errno == EINVAL, "aligned_alloc(24) = %p errno %d", p, errno);
    }
    errno = 0;
    p = aligned_alloc(64, vsize(SIZE_MAX - 10));
    CHECK(p == NULL && errno == ENOMEM, "aligned_alloc huge = %p errno %d", p, errno);

    /* memalign: glibc rounds a non-power-of-two alignment up */
    p = memalign(24, vsize(10));
    CHECK(p && is_aligned(p, 32), "memalign(24) = %p", p);
    free(p);
    p = memalign(3000, vsize(10));
    CHECK(p && is_aligned(p, 4096), "memalign(3000) = %p", p);
    free(p);
    p = memalign(0, vsize(10));
    CHECK(p != NULL, "memalign(0, 10) = %p", p);
    free(p);
    errno = 0;
    p = memalign(SIZE_MAX / 2 + 2, vsize(1));
    CHECK(p == NULL && errno == EINVAL, "memalign(SIZE_MAX/2+2) = %p errno %d", p, errno);
    errno = 0;
    p = memalign(4096, vsize(SIZE_MAX - 10));
    CHECK(p == NULL && errno == ENOMEM, "memalign huge = %p errno %d", p, errno);

    p = valloc(vsize(1));
    CHECK(p && is_aligned(p, page), "valloc(1) = %p", p);
    free(p);
    p = valloc(vsize(3 * page + 5));
    CHECK(p && is_aligned(p, page), "valloc(3 pages + 5) = %p", p);
    fill(p, 3 * page + 5, 2);
    free(p);
    p = pvalloc(vsize(1));
    CHECK(p && is_aligned(p, page) && malloc_usable_size(p) >= (size_t)page, "pvalloc(1) = %p usable %zu",
          p, p ? malloc_usable_size(p) : 0);
    if (p) fill(p, page, 2);
    free(p);
    p = pvalloc(vsize(page + 1));
    CHECK(p && is_aligned(p, page) && malloc_usable_size(p) >= 2 * (size_t)page, "pvalloc(page+1)");
    if (p) fill(p, 2 * page, 2);
    free(p);
    p = pvalloc(vsize(0));
    CHECK(p && is_aligned(p, page), "pvalloc(0) = %p", p);
    free(p);
    errno = 0;
    p = pvalloc(vsize(SIZE_MAX - 10));
    CHECK(p == NULL && errno == ENOMEM, "pvalloc overflow = %p errno %d", p, errno);
    errno = 0;
    p = valloc(vsize(SIZE_MAX - 10));
    CHECK(p == NULL && errno == ENOMEM, "valloc huge = %p errno %d", p, errno);

    /* cfree is only a compat symbol in glibc >= 2.26: look it up */
    void (*cf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
    if (lifeboat) CHECK(cf != NULL, "lifeboat exports cfree");
    if (cf) {
        p = malloc(vsize(40));
        cf(p);
        cf(NULL);
        passed++;
    }
}

/* Blocks made on one thread, freed on another. */
#define NPASS 20000
static void *volatile handoff[NPASS];

static void *producer(void *arg) {
    (void)arg;
    for (int i = 0; i < NPASS; i++) {
        size_t n = (size_t)(i * 37 % 5000) + 1;
        unsigned char *p = malloc(n);
        if (!p) return (void *)1;
        fill(p, n, (unsigned)i);
        handoff[i] = p;
    }
    return NULL;
}

static void *churn(void *arg) {
    uintptr_t seed = (uintptr_t)arg;
    void *slots[256] = {0};
    size_t sz[256] = {0};
    for (int i = 0; i < 200000; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        unsigned k = (unsigned)(seed >> 56);
        size_t n = (size_t)((seed >> 20) % (i % 100 == 0 ? 200000 : 600)) + 1;
        if (slots[k]) {
            if (!holds(slots[k], sz[k], k)) return (void *)1;
            if (seed & 1) {
                free(slots[k]);
                slots[k] = NULL;
                continue;
            }
            void *q = realloc(slots[k], n);
            if (!q) return (void *)1;
            size_t keep = sz[k] < n ? sz[k] : n;
            if (!holds(q, keep, k)) return (void *)1;
            slots[k] = q;
        } else {
            slots[k] = (seed & 2) ? calloc(1, n) : malloc(n);
            if (!slots[k]) return (void *)1;
        }
        sz[k] = n;
        fill(slots[k], n, k);
    }
    for (int k = 0; k < 256; k++) free(slots[k]);
    return NULL;
}

static void test_threads(void) {
    pthread_t t;
    void *res = (void *)1;
    CHECK(pthread_create(&t, NULL, producer, NULL) == 0, "pthread_create");
    pthread_join(t, &res);
    CHECK(res == NULL, "producer failed");
    int ok = 1;
    for (int i = 0; i < NPASS; i++) {
        size_t n = (size_t)(i * 37 % 5000) + 1;
        ok &= holds(handoff[i], n, (unsigned)i);
        free(handoff[i]);
    }
    CHECK(ok, "blocks handed between threads lost contents");

    pthread_t ts[4];
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&ts[i], NULL, churn, (void *)(i + 1));
    for (int i = 0; i < 4; i++) {
        void *r = (void *)1;
        pthread_join(ts[i], &r);
        CHECK(r == NULL, "churn thread %d failed", i);
    }
}

static void test_fork(void) {
    void *before = malloc(vsize(1000));
    fill(before, 1000, 9);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = !holds(before, 1000, 9);
        free(before);
        for (int i = 0; i < 10000; i++) {
            void *p = malloc((size_t)i % 3000 + 1);
            if (!p) bad = 1;
            free(p);
        }
        _exit(bad);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forked child failed (status %d)", st);
    free(before);
}

/* Blocks lifeboat never made (glibc's own allocator through
 * __libc_malloc, and a bare mapping): free leaks them, realloc copies what
 * it can read, malloc_usable_size reports 0. */
static void test_foreign(void) {
    void *(*sys_malloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
    size_t (*ff)(void) = (size_t(*)(void))dlsym(RTLD_DEFAULT, "lifeboat_capi_foreign_frees");
    size_t (*fr)(void) = (size_t(*)(void))dlsym(RTLD_DEFAULT, "lifeboat_capi_foreign_reallocs");
    CHECK(sys_malloc && ff && fr, "symbols for the foreign-block test");
    if (!sys_malloc || !ff || !fr) return;
    size_t frees = ff(), reallocs = fr();

    unsigned char *f = sys_malloc(100);
    fill(f, 100, 8);
    CHECK(malloc_usable_size(f) == 0, "malloc_usable_size(foreign) = %zu", malloc_usable_size(f));
    unsigned char *q = realloc(f, vsize(5000));
    CHECK(q && q != f && holds(q, 100, 8), "realloc(foreign, 5000) kept the contents");
    CHECK(fr() == reallocs + 1, "foreign realloc counted");
    CHECK(holds(f, 100, 8), "the foreign block is left alone");
    free(q);
    free(f); /* ignored: leaked */
    CHECK(ff() == frees + 1, "foreign free counted");
    unsigned char *g = sys_malloc(50);
    fill(g, 50, 3);
    q = realloc(g, vsize(20));
    CHECK(q && holds(q, 20, 3), "realloc(foreign, 20) shrinks with the contents");
    free(q);
    g = sys_malloc(10);
    CHECK(realloc(g, vsize(0)) == NULL, "realloc(foreign, 0) frees and returns NULL");

    /* A block ending right before an unreadable page: the copy must stop
     * there instead of faulting. */
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED, "mmap");
    if (m == MAP_FAILED) return;
    mprotect(m + page, page, PROT_NONE);
    unsigned char *edge = m + page - 48;
    fill(edge, 48, 6);
    q = realloc(edge, vsize(4 * page));
    CHECK(q && holds(q, 48, 6), "realloc of a block before a guard page");
    free(q);
    munmap(m, 2 * page);
}

/* Under LIFEBOAT_BUDGET (a few tens of MiB): allocation stops with ENOMEM
 * near the budget, and memory freed can be allocated again. */
static void test_budget(void) {
    const char *b = getenv("LIFEBOAT_BUDGET");
    char *end;
    unsigned long long budget = strtoull(b, &end, 10);
    if (*end == 'M' || *end == 'm') budget <<= 20;
    else if (*end == 'K' || *end == 'k') budget <<= 10;
    else if (*end == 'G' || *end == 'g') budget <<= 30;
    enum { CHUNK = 1 << 20, MAXN = 4096 };
    static void *blocks[MAXN];
    size_t n = 0;
    errno = 0;
    while (n < MAXN) {
        void *p = malloc(vsize(CHUNK));
        if (!p) break;
        memset(p, 1, CHUNK);
        blocks[n++] = p;
    }
    CHECK(n < MAXN && errno == ENOMEM, "allocation under budget %llu stopped: n=%zu errno %d", budget, n, errno);
    CHECK((unsigned long long)n * CHUNK <= budget, "allocated %zu MiB over a %llu-byte budget", n, budget);
    CHECK((unsigned long long)n * CHUNK >= budget / 4, "only %zu MiB under a %llu-byte budget", n, budget);
    errno = 0;
    void *big = malloc(vsize((size_t)budget * 2));
    CHECK(big == NULL && errno == ENOMEM, "malloc(2 * budget) = %p errno %d", big, errno);
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    size_t again = 0;
    while (again < n) {
        void *p = malloc(vsize(CHUNK));
        if (!p) break;
        blocks[again++] = p;
    }
    CHECK(again == n, "after freeing, %zu of %zu MiB could be allocated again", again, n);
    for (size_t i = 0; i < again; i++) free(blocks[i]);
}

int main(int argc, char **argv) {
    int expect = argc > 1 && strcmp(argv[1], "--expect-lifeboat") == 0;
    lifeboat = dlsym(RTLD_DEFAULT, "lifeboat_capi_foreign_frees") != NULL;
    if (expect) CHECK(lifeboat, "liblifeboat_capi.so is not loaded");
    test_malloc();
    test_calloc();
    test_realloc();
    test_posix_memalign();
    test_aligned();
    test_threads();
    test_fork();
    if (lifeboat) test_foreign();
    if (lifeboat && getenv("LIFEBOAT_BUDGET")) test_budget();
    if (lifeboat) {
        size_t (*ff)(void) = (size_t(*)(void))dlsym(RTLD_DEFAULT, "lifeboat_capi_foreign_frees");
        size_t (*fr)(void) = (size_t(*)(void))dlsym(RTLD_DEFAULT, "lifeboat_capi_foreign_reallocs");
        printf("edge_cases: lifeboat loaded; foreign frees %zu, foreign reallocs %zu\n", ff(), fr());
    }
    printf("edge_cases: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
