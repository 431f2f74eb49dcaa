/* Wake-up latency of the doorbell candidates, outside atbus (docs/event-loop.md, "Why a
 * FIFO"). A writer process sleeps 100 us, stamps the time into shared memory and rings;
 * the reader waits, then takes the difference. p50/p90/p99 of 20,000 wake-ups.
 *
 *   cc -O2 -o /tmp/doorbells atbus-bench/c/doorbells.c
 *   for r in 1 2 3 4; do for m in futex socket fifo; do /tmp/doorbells $m; done; done
 *
 * futex:  the reader sleeps in FUTEX_WAIT, the writer calls FUTEX_WAKE (the blocking
 *         reader's path).
 * socket: a Unix datagram socket bound at a path; the writer sends one byte from a socket
 *         connected to it (layout version 2's doorbell).
 * fifo:   a FIFO at a path, opened O_RDWR | O_NONBLOCK on both sides; the writer writes
 *         one byte (layout version 3's doorbell).
 * For socket and fifo the reader poll(2)s an epoll fd holding the doorbell and a timerfd,
 * as atbus's readiness fd is, and drains it after taking the time. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 1000
#define SAMPLES 20000
#define ACKED (1ull << 63)

struct shared {
    _Atomic uint64_t seq;   /* message number, or ACKED | number once the reader took it */
    _Atomic uint64_t stamp; /* CLOCK_MONOTONIC ns just before the ring */
    _Atomic uint32_t futex;
};

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    static uint64_t lat[WARMUP + SAMPLES];
    const char *path = "/dev/shm/atbus-doorbells.bell";
    const char *mode = argc == 2 ? argv[1] : "";
    int futex = !strcmp(mode, "futex"), sock = !strcmp(mode, "socket");
    int fifo = !strcmp(mode, "fifo"), bell = -1, wait_fd = -1;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct shared *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t writer;
    uint64_t i;

    if (!futex && !sock && !fifo) {
        fprintf(stderr, "usage: doorbells futex|socket|fifo\n");
        return 2;
    }
    if (s == MAP_FAILED)
        die("mmap");
    strcpy(addr.sun_path, path);
    unlink(path);
    if (sock) {
        bell = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (bell < 0 || bind(bell, (struct sockaddr *)&addr, sizeof addr) != 0)
            die("bind");
    } else if (fifo) {
        if (mkfifo(path, 0600) != 0 || (bell = open(path, O_RDWR | O_NONBLOCK)) < 0)
            die("mkfifo");
    }
    if (bell >= 0) {
        struct epoll_event ev = {.events = EPOLLIN};
        int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
        wait_fd = epoll_create1(0);
        if (timer < 0 || wait_fd < 0 || epoll_ctl(wait_fd, EPOLL_CTL_ADD, bell, &ev) != 0 ||
            epoll_ctl(wait_fd, EPOLL_CTL_ADD, timer, &ev) != 0)
            die("epoll");
    }

    writer = fork();
    if (writer < 0)
        die("fork");
    if (writer == 0) {
        int ring = -1;
        char byte = 1;
        if (sock && ((ring = socket(AF_UNIX, SOCK_DGRAM, 0)) < 0 ||
                     connect(ring, (struct sockaddr *)&addr, sizeof addr) != 0))
            die("connect");
        if (fifo && (ring = open(path, O_RDWR | O_NONBLOCK)) < 0)
            die("open");
        for (i = 1; i <= WARMUP + SAMPLES; i++) {
            struct timespec gap = {0, 100000}, poll_gap = {0, 1000};
            nanosleep(&gap, NULL);
            atomic_store(&s->stamp, now_ns());
            atomic_store(&s->seq, i);
            if (futex) {
                atomic_store(&s->futex, 1);
                syscall(SYS_futex, &s->futex, FUTEX_WAKE, 1, NULL, NULL, 0);
            } else if (sock) {
                send(ring, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
            } else if (write(ring, &byte, 1) < 0) {
                die("write");
            }
            while (atomic_load(&s->seq) != (ACKED | i))
                nanosleep(&poll_gap, NULL);
        }
        _exit(0);
    }

    for (i = 1; i <= WARMUP + SAMPLES; i++) {
        char drain[64];
        while (atomic_load(&s->seq) != i) {
            if (futex) {
                syscall(SYS_futex, &s->futex, FUTEX_WAIT, 0, NULL, NULL, 0);
                atomic_store(&s->futex, 0);
            } else {
                struct pollfd p = {.fd = wait_fd, .events = POLLIN};
                poll(&p, 1, -1);
            }
        }
        lat[i - 1] = now_ns() - atomic_load(&s->stamp);
        if (bell >= 0)
            while (read(bell, drain, sizeof drain) > 0) {
            }
        atomic_store(&s->seq, ACKED | i);
    }
    waitpid(writer, NULL, 0);
    unlink(path);
    qsort(lat + WARMUP, SAMPLES, sizeof lat[0], by_value);
    printf("%-6s p50 %.2f us, p90 %.2f us, p99 %.2f us\n", mode, lat[WARMUP + SAMPLES / 2] / 1e3,
           lat[WARMUP + SAMPLES * 9 / 10] / 1e3, lat[WARMUP + SAMPLES * 99 / 100] / 1e3);
    return 0;
}
