/*
 * malloc and free from a signal handler that interrupts malloc and free.
 *
 * Not valid C (malloc is not async-signal-safe; glibc's allocator aborts
 * on it), but lifeboat's design (DESIGN.md section 6) treats re-entry from
 * a signal handler as a normal case. A 50 us interval timer interrupts a
 * loop of mallocs and frees; the handler allocates and frees. With
 * --after-init the heap is created before the timer starts.
 *
 * Prints "signal_reentry: handled N" after 20000 handled signals.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static volatile long handled;

static void on_alarm(int sig) {
    (void)sig;
    void *p = malloc(48 + (size_t)(handled % 5000));
    if (p) memset(p, 1, 48);
    free(p);
    handled++;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--after-init") == 0) free(malloc(1));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
    void *slots[512] = {0};
    unsigned s = 1;
    for (long i = 0; i < 30000000 && handled < 20000; i++) {
        s = s * 1103515245 + 12345;
        unsigned k = (s >> 8) & 511;
        free(slots[k]);
        slots[k] = malloc((s >> 16) % (i % 1000 == 0 ? 70000 : 700) + 1);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (int k = 0; k < 512; k++) free(slots[k]);
    printf("signal_reentry: handled %ld\n", handled);
    return 0;
}
