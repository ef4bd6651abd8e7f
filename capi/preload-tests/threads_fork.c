/*
 * Threads that live briefly and exchange blocks, while the main thread
 * forks children that allocate.
 *
 * Two spawner threads each start rounds of four short-lived threads; those
 * allocate blocks (mostly small, some of 100 KB) and swap them into a shared
 * table, freeing whatever block was there, so most frees are of blocks that
 * another (often exited) thread made. Meanwhile the main thread forks 200
 * children, which allocate and free and exit: the allocator's fork handlers
 * must leave the child's heap usable whatever locks other threads held.
 *
 * Prints "threads_fork: bad children 0" and exits 0 on success.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define Q 4096
static void *volatile table[Q];
static volatile int stop;

static void *shortlived(void *a) {
    uint64_t s = (uint64_t)(uintptr_t)a;
    for (int i = 0; i < 2000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = (size_t)((s >> 33) % (i % 50 == 0 ? 100000 : 2000)) + 1;
        unsigned char *p = malloc(n);
        if (!p) abort();
        memset(p, 0x5a, n < 64 ? n : 64);
        unsigned k = (unsigned)((s >> 40) % Q);
        void *old = __atomic_exchange_n(&table[k], p, __ATOMIC_ACQ_REL);
        if (old && *(unsigned char *)old != 0x5a) abort();
        free(old);
    }
    return NULL;
}

static void *spawner(void *a) {
    uintptr_t base = (uintptr_t)a;
    for (int r = 0; !stop && r < 300; r++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, shortlived, (void *)(base + (uintptr_t)r * 4 + (uintptr_t)i + 1));
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    }
    return NULL;
}

int main(void) {
    pthread_t s[2];
    for (int i = 0; i < 2; i++) pthread_create(&s[i], NULL, spawner, (void *)(uintptr_t)(i * 100000));
    int bad = 0;
    for (int f = 0; f < 200; f++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0; i < 1000; i++) free(malloc((size_t)i + 1));
            free(malloc(1 << 20));
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) bad++;
        usleep(1000);
    }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(s[i], NULL);
    for (int k = 0; k < Q; k++) free(table[k]);
    printf("threads_fork: bad children %d\n", bad);
    return bad != 0;
}
