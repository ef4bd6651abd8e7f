/*
 * The allocator's thread-locals under dynamic TLS.
 *
 * In a shared library, lifeboat's thread-locals use the general-dynamic TLS
 * model: each access calls __tls_get_addr. After dlopen adds TLS modules,
 * a thread's first TLS access (any module's, lifeboat's included) brings
 * its dtv up to date, which may realloc the dtv and free stale blocks
 * through the interposed allocator, from inside that allocator. This test
 * loads NMOD modules with TLS (more than the dtv's 14 spare slots), touches
 * their TLS from threads created before, during and after the loads, while
 * other threads keep allocating, then unloads and reloads some of them (a
 * reused module id frees the old block from inside __tls_get_addr). Last,
 * a storm of STORM unload/reload rounds while short-lived threads come and
 * go: every round makes each thread's next TLS access update its dtv, and
 * the churners' large blocks keep lifeboat's locked paths busy. A TLS
 * access made under a lifeboat lock has its nested allocation refused and
 * glibc aborts ("cannot allocate memory for thread-local data"): before
 * the fix, in about one run in seven.
 *
 * usage: tls_dlopen DIR   (DIR holds libtlsmod0.so ... libtlsmod47.so)
 * Prints "tls_dlopen: ok <checksum>"; the checksum is the same with any
 * allocator.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NMOD 48
#define STORM 400
static void *mods[NMOD];
static volatile int stop;

static void *churn(void *a) {
    (void)a;
    unsigned long i = 0;
    void *keep[64] = {0};
    while (!stop) {
        unsigned k = i % 64;
        /* mostly small, every 8th a block of up to 8 MiB: the arena's
         * locked paths run often */
        size_t n = i % 8 ? (i * 7919) % 3000 + 1 : ((i * 7919) % 8192 + 1) << 10;
        keep[k] = realloc(keep[k], n);
        if (!keep[k]) abort();
        memset(keep[k], (int)i, 1);
        i++;
    }
    for (int k = 0; k < 64; k++) free(keep[k]);
    return NULL;
}

static void *shortlived(void *a) {
    (void)a;
    void *p[8];
    for (int i = 0; i < 8; i++) p[i] = malloc(64 << i);
    for (int i = 0; i < 8; i++) free(p[i]);
    return NULL;
}

static long touch(int m) {
    long (*t)(void) = (long (*)(void))dlsym(mods[m], "touch");
    return t ? t() : -1000000;
}

static void *toucher(void *a) {
    long sum = 0;
    int n = (int)(long)a;
    for (int round = 0; round < 3; round++)
        for (int m = 0; m < n; m++) {
            sum += touch(m);
            free(malloc(100 + (size_t)m));
        }
    return (void *)sum;
}

static int load(const char *dir, int m) {
    char path[4096];
    snprintf(path, sizeof path, "%s/libtlsmod%d.so", dir, m);
    mods[m] = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!mods[m]) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_t c[3], t[NMOD / 12];
    for (int i = 0; i < 3; i++) pthread_create(&c[i], NULL, churn, NULL);
    long total = 0;
    for (int m = 0; m < NMOD; m++) {
        if (!load(argv[1], m)) return 1;
        /* threads that know only the modules loaded so far */
        if (m % 12 == 11) pthread_create(&t[m / 12], NULL, toucher, (void *)(long)(m + 1));
        total += touch(m);
    }
    for (int i = 0; i < NMOD / 12; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
    }
    /* unload half and load them again: their module ids are reused */
    for (int m = 0; m < NMOD; m += 2) dlclose(mods[m]);
    for (int m = 0; m < NMOD; m += 2)
        if (!load(argv[1], m)) return 1;
    pthread_t late;
    void *r;
    pthread_create(&late, NULL, toucher, (void *)(long)NMOD);
    pthread_join(late, &r);
    total += (long)r;
    total += (long)toucher((void *)(long)NMOD);
    /* a storm of generation changes while the churners run and short-lived
     * threads come and go: each reload makes every thread's next TLS access
     * (lifeboat's included, wherever it happens) update its dtv */
    for (int round = 0; round < STORM; round++) {
        int m = round % NMOD;
        pthread_t s;
        pthread_create(&s, NULL, shortlived, NULL);
        dlclose(mods[m]);
        if (!load(argv[1], m)) return 1;
        pthread_join(s, NULL);
    }
    stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(c[i], NULL);
    for (int m = 0; m < NMOD; m++) dlclose(mods[m]);
    printf("tls_dlopen: ok %ld\n", total);
    return 0;
}
