/* An event loop in C: one epoll instance watches the readiness fds of two channels and a
 * timer fd. For each channel: arm, wait for POLLIN, then atbus_recv until
 * ATBUS_ERR_EMPTY (which also drains the fd), then arm again. The timer ticks every
 * 10 ms alongside, and stops the program if no message arrives for 60 s.
 *
 * Checks every byte and each writer's order; writers of channel i have ids
 * ID_BASE + i * WRITERS .. + WRITERS - 1, COUNT messages each.
 *
 * usage: evloop NAME_A NAME_B ID_BASE WRITERS COUNT
 * prints: received A B waits W ticks T */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define CHANNELS 2

struct source {
    atbus_channel *ch;
    int fd;
    uint64_t received;
    uint64_t next[64];
};

/* Receives until ATBUS_ERR_EMPTY, then arms; repeats while arming finds a message. */
static void drain_and_arm(struct source *s, int index, uint64_t id_base, uint64_t writers,
                          uint8_t *buf, size_t cap) {
    for (;;) {
        size_t len;
        int32_t rc = atbus_recv(s->ch, buf, cap, &len);
        if (rc == ATBUS_OK) {
            uint64_t id, seq, first = id_base + (uint64_t)index * writers;
            CHECK(check_payload(buf, len, &id, &seq) == 0);
            CHECK(id >= first && id < first + writers);
            if (seq != s->next[id - first]) {
                fprintf(stderr, "channel %d writer %llu: message %llu arrived, expected %llu\n",
                        index, (unsigned long long)id, (unsigned long long)seq,
                        (unsigned long long)s->next[id - first]);
                exit(1);
            }
            s->next[id - first]++;
            s->received++;
            continue;
        }
        EXPECT(rc, ATBUS_ERR_EMPTY);
        /* 0: armed, wait for POLLIN; 1: a message came in meanwhile, receive it. */
        rc = atbus_reader_arm(s->ch);
        CHECK(rc == 0 || rc == 1);
        if (rc == 0) {
            return;
        }
    }
}

int main(int argc, char **argv) {
    struct source src[CHANNELS];
    struct epoll_event ev, events[8];
    struct itimerspec tick;
    uint64_t id_base, writers, count, waits = 0, ticks = 0, idle_ticks = 0;
    int ep, timer, i;
    size_t cap = 4096;
    uint8_t *buf = (uint8_t *)malloc(cap);

    CHECK(argc == 6 && buf != NULL);
    id_base = parse_u64(argv[3]);
    writers = parse_u64(argv[4]);
    count = parse_u64(argv[5]);
    CHECK(writers >= 1 && writers <= 64);
    ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    memset(src, 0, sizeof src);
    for (i = 0; i < CHANNELS; i++) {
        OK(atbus_open(argv[1 + i], &src[i].ch));
        src[i].fd = atbus_reader_fd(src[i].ch); /* takes the reader role */
        CHECK(src[i].fd >= 0);
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t)i;
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, src[i].fd, &ev) == 0);
    }
    timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK(timer >= 0);
    memset(&tick, 0, sizeof tick);
    tick.it_value.tv_nsec = 10 * 1000 * 1000;
    tick.it_interval.tv_nsec = 10 * 1000 * 1000;
    CHECK(timerfd_settime(timer, 0, &tick, NULL) == 0);
    ev.events = EPOLLIN;
    ev.data.u32 = CHANNELS;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, timer, &ev) == 0);

    /* Before the first wait: whatever is there already, then arm. */
    for (i = 0; i < CHANNELS; i++) {
        drain_and_arm(&src[i], i, id_base, writers, buf, cap);
    }
    while (src[0].received < writers * count || src[1].received < writers * count) {
        int n = epoll_wait(ep, events, 8, -1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        CHECK(n > 0);
        waits++;
        for (i = 0; i < n; i++) {
            uint32_t which = events[i].data.u32;
            if (which == CHANNELS) {
                uint64_t expirations;
                CHECK(read(timer, &expirations, sizeof expirations) == sizeof expirations);
                ticks += expirations;
                idle_ticks += expirations;
                CHECK(idle_ticks < 6000); /* 60 s without a message */
                continue;
            }
            idle_ticks = 0;
            drain_and_arm(&src[which], (int)which, id_base, writers, buf, cap);
        }
    }
    for (i = 0; i < CHANNELS; i++) {
        size_t len;
        atbus_stats stats = { .size = sizeof stats };
        EXPECT(atbus_recv(src[i].ch, buf, cap, &len), ATBUS_ERR_EMPTY);
        OK(atbus_get_stats(src[i].ch, &stats));
        CHECK(stats.bad_nodes == 0 && stats.bad_blocks == 0);
        CHECK(stats.messages_received == src[i].received);
        /* Out of the event loop before atbus_close closes the fd. */
        CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, src[i].fd, NULL) == 0);
        atbus_close(src[i].ch);
    }
    close(timer);
    close(ep);
    free(buf);
    printf("received %llu %llu waits %llu ticks %llu\n", (unsigned long long)src[0].received,
           (unsigned long long)src[1].received, (unsigned long long)waits,
           (unsigned long long)ticks);
    return 0;
}
