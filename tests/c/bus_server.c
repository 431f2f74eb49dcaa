/* A request/reply server on an atbus bus, in an epoll loop: it joins the bus as NAME,
 * waits on its endpoint's readiness fd (atbus_endpoint_fd, atbus_endpoint_arm) and a
 * 10 ms timer, receives until ATBUS_ERR_EMPTY, answers every request with reply_for()
 * (bus_common.h) and counts data messages. Checks every byte of every message, each
 * client's order (requests and data separately), envelopes (kind, sender name, pid,
 * correlation ids rising per client), and stops once it has had REQUESTS requests and
 * DATA data messages from each of CLIENTS clients (or fails after 60 s without a
 * message).
 *
 * With "mute" as a sixth argument it answers nothing: it prints "request FROM" for each
 * request and waits to be killed (the test of ATBUS_ERR_PEER_GONE).
 *
 * usage: bus_server BUS NAME CLIENTS REQUESTS DATA [mute]
 * prints: "ready" once joined, then "served R requests D data B bytes" at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "bus_common.h"

#define MAX_CLIENTS 64

struct client {
    uint64_t next_request, next_data, last_correlation;
    uint32_t pid;
};

struct server {
    atbus_endpoint *ep;
    uint64_t clients, requests, data, bytes;
    int mute;
    struct client c[MAX_CLIENTS];
};

/* Which client sent `env`, checking its name against the payload's writer id. */
static struct client *sender(struct server *s, const atbus_envelope *env, uint64_t id,
                             uint64_t base) {
    char expect[64];
    struct client *c;
    CHECK(id >= base && id < base + s->clients);
    client_name(expect, id - base);
    if (strcmp(env->from, expect) != 0) {
        fprintf(stderr, "writer id %llu came from endpoint \"%s\", not \"%s\"\n",
                (unsigned long long)id, env->from, expect);
        exit(1);
    }
    c = &s->c[id - base];
    CHECK(c->pid == 0 || c->pid == env->from_pid);
    c->pid = env->from_pid;
    return c;
}

static void handle(struct server *s, const uint8_t *msg, size_t len, const atbus_envelope *env,
                   uint8_t *reply) {
    uint64_t id, seq;
    struct client *c;
    CHECK(check_payload(msg, len, &id, &seq) == 0);
    CHECK(len >= MIN_LEN && len <= MAX_LEN);
    if (env->kind == ATBUS_MSG_DATA) {
        c = sender(s, env, id, DATA_ID);
        CHECK(env->correlation == 0);
        if (seq != c->next_data) {
            fprintf(stderr, "%s: data %llu arrived, expected %llu\n", env->from,
                    (unsigned long long)seq, (unsigned long long)c->next_data);
            exit(1);
        }
        c->next_data++;
        s->data++;
        s->bytes += len;
        return;
    }
    CHECK(env->kind == ATBUS_MSG_REQUEST);
    if (s->mute) {
        printf("request %s\n", env->from);
        fflush(stdout);
        return;
    }
    c = sender(s, env, id, REQUEST_ID);
    if (seq != c->next_request) {
        fprintf(stderr, "%s: request %llu arrived, expected %llu\n", env->from,
                (unsigned long long)seq, (unsigned long long)c->next_request);
        exit(1);
    }
    /* Correlation ids are never reused: they rise with every request of an endpoint. */
    CHECK(env->correlation > c->last_correlation);
    c->last_correlation = env->correlation;
    c->next_request++;
    s->requests++;
    s->bytes += len;
    OK(atbus_endpoint_reply(s->ep, env, reply, reply_for(msg, len, reply)));
}

/* Receives until ATBUS_ERR_EMPTY, then arms; repeats while arming finds a message. */
static void drain_and_arm(struct server *s, uint8_t *buf, size_t cap, uint8_t *reply) {
    for (;;) {
        size_t len;
        atbus_envelope env;
        int32_t rc = atbus_endpoint_recv(s->ep, buf, cap, &len, &env, 0);
        if (rc == ATBUS_OK) {
            handle(s, buf, len, &env, reply);
            continue;
        }
        EXPECT(rc, ATBUS_ERR_EMPTY);
        /* 0: armed, wait for POLLIN; 1: a message came in meanwhile, receive it. */
        rc = atbus_endpoint_arm(s->ep);
        CHECK(rc == 0 || rc == 1);
        if (rc == 0) {
            return;
        }
    }
}

int main(int argc, char **argv) {
    struct server s;
    struct epoll_event ev, events[4];
    struct itimerspec tick;
    atbus_bus *bus;
    uint64_t requests, data, idle_ticks = 0;
    int ep, timer, fd;
    size_t cap = MAX_LEN;
    uint8_t *buf = (uint8_t *)malloc(cap), *reply = (uint8_t *)malloc(cap + 1);

    CHECK((argc == 6 || (argc == 7 && strcmp(argv[6], "mute") == 0)) && buf && reply);
    memset(&s, 0, sizeof s);
    s.clients = parse_u64(argv[3]);
    requests = parse_u64(argv[4]);
    data = parse_u64(argv[5]);
    s.mute = argc == 7;
    CHECK(s.clients >= 1 && s.clients <= MAX_CLIENTS);

    OK(atbus_bus_open(argv[1], ATBUS_BUS_CREATE, &bus));
    OK(atbus_bus_join(bus, argv[2], &s.ep));
    fd = atbus_endpoint_fd(s.ep);
    CHECK(fd >= 0);
    ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    ev.events = EPOLLIN;
    ev.data.u32 = 0;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
    timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK(timer >= 0);
    memset(&tick, 0, sizeof tick);
    tick.it_value.tv_nsec = 10 * 1000 * 1000;
    tick.it_interval.tv_nsec = 10 * 1000 * 1000;
    CHECK(timerfd_settime(timer, 0, &tick, NULL) == 0);
    ev.data.u32 = 1;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, timer, &ev) == 0);
    printf("ready\n");
    fflush(stdout);

    drain_and_arm(&s, buf, cap, reply);
    while (s.mute || s.requests < s.clients * requests || s.data < s.clients * data) {
        int i, n = epoll_wait(ep, events, 4, -1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        CHECK(n > 0);
        for (i = 0; i < n; i++) {
            if (events[i].data.u32 == 1) {
                uint64_t expirations;
                CHECK(read(timer, &expirations, sizeof expirations) == sizeof expirations);
                idle_ticks += expirations;
                CHECK(idle_ticks < 6000); /* 60 s without a message */
                continue;
            }
            idle_ticks = 0;
            drain_and_arm(&s, buf, cap, reply);
        }
    }
    CHECK(s.requests == s.clients * requests && s.data == s.clients * data);
    {
        size_t len;
        atbus_envelope env;
        EXPECT(atbus_endpoint_recv(s.ep, buf, cap, &len, &env, 0), ATBUS_ERR_EMPTY);
    }
    /* Out of the event loop before atbus_endpoint_close closes the fd. */
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0);
    atbus_endpoint_close(s.ep);
    atbus_bus_close(bus);
    close(timer);
    close(ep);
    free(buf);
    free(reply);
    printf("served %llu requests %llu data %llu bytes\n", (unsigned long long)s.requests,
           (unsigned long long)s.data, (unsigned long long)s.bytes);
    return 0;
}
