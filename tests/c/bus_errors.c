/* The error paths of the bus C ABI, in one process (and one helper thread): bad
 * arguments, ATBUS_ERR_NAME_TAKEN, ATBUS_ERR_NO_SUCH_ENDPOINT, ATBUS_ERR_EMPTY and
 * ATBUS_ERR_FULL with timeout 0, ATBUS_ERR_TIMEOUT, ATBUS_ERR_BUFFER_TOO_SMALL from
 * atbus_endpoint_recv (the message is kept, and returned next), from
 * atbus_endpoint_request (the reply comes through atbus_endpoint_recv) and from
 * atbus_bus_members (with the count needed), and atbus_bus_unlink removing the
 * directory and every inbox from /dev/shm while endpoints are still joined.
 *
 * usage: bus_errors BUS        (BUS must not exist)
 * prints: "bus errors ok" */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static int contains(const char *text, const char *part) {
    return strstr(text, part) != NULL;
}

/* Objects in /dev/shm belonging to bus `bus` ("/NAME"): NAME itself and NAME.*. */
static int objects_of(const char *bus) {
    const char *name = bus + 1;
    size_t n = strlen(name);
    struct dirent *e;
    int count = 0;
    DIR *dir = opendir("/dev/shm");
    CHECK(dir != NULL);
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, name, n) == 0 && (e->d_name[n] == '\0' || e->d_name[n] == '.')) {
            count++;
        }
    }
    closedir(dir);
    return count;
}

/* The echo thread: answers one request with REPLY_LEN bytes. */
#define REPLY_LEN 1000
struct echo {
    atbus_endpoint *ep;
    atbus_envelope request;
};

static void *echo_once(void *arg) {
    struct echo *e = (struct echo *)arg;
    uint8_t buf[64], reply[REPLY_LEN];
    size_t len;
    memset(reply, 0x5A, sizeof reply);
    OK(atbus_endpoint_recv(e->ep, buf, sizeof buf, &len, &e->request, UINT64_MAX));
    CHECK(e->request.kind == ATBUS_MSG_REQUEST && len == 4 && memcmp(buf, "ping", 4) == 0);
    OK(atbus_endpoint_reply(e->ep, &e->request, reply, sizeof reply));
    return NULL;
}

int main(int argc, char **argv) {
    const char *name;
    char long_name[70], names[8][64];
    atbus_bus *bus, *none = (atbus_bus *)&argc;
    atbus_endpoint *alpha, *beta, *echo, *ep = (atbus_endpoint *)&argc;
    atbus_envelope env, forged;
    struct echo e;
    pthread_t thread;
    static uint8_t big[64 << 10];
    uint8_t buf[4096], small[300];
    size_t len, count, i, sent, drained;
    int32_t rc;

    CHECK(argc == 2);
    name = argv[1];

    /* ---- bad arguments: refused with a code and a message, never a crash. */
    EXPECT(atbus_bus_open(NULL, 0, &none), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(none == NULL);
    EXPECT(atbus_bus_open(name, 0, NULL), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_bus_open("no-slash", ATBUS_BUS_CREATE, &bus), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_bus_open("/bad\xff", ATBUS_BUS_CREATE, &bus), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(contains(atbus_last_error(), "not valid UTF-8"));
    EXPECT(atbus_bus_open(name, 0x80, &bus), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(contains(atbus_last_error(), "ATBUS_BUS_CREATE"));
    EXPECT(atbus_bus_open(name, 0, &bus), ATBUS_ERR_NOT_FOUND);
    EXPECT(atbus_bus_unlink(name), ATBUS_ERR_NOT_FOUND);
    EXPECT(atbus_bus_unlink(NULL), ATBUS_ERR_INVALID_ARGUMENT);
    OK(atbus_bus_open(name, ATBUS_BUS_CREATE, &bus));

    EXPECT(atbus_bus_join(NULL, "alpha", &ep), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(ep == NULL);
    EXPECT(atbus_bus_join(bus, NULL, &ep), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_bus_join(bus, "alpha", NULL), ATBUS_ERR_INVALID_ARGUMENT);
    memset(long_name, 'n', 64);
    long_name[64] = '\0'; /* one byte over the limit of 63 */
    EXPECT(atbus_bus_join(bus, long_name, &ep), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(contains(atbus_last_error(), "1 to 63 bytes"));
    EXPECT(atbus_bus_join(bus, "a/b", &ep), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_bus_join(bus, "\xc3\x28", &ep), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(contains(atbus_last_error(), "not valid UTF-8"));
    long_name[63] = '\0'; /* 63 bytes: the longest name */
    OK(atbus_bus_join(bus, long_name, &ep));
    atbus_endpoint_close(ep);

    EXPECT(atbus_endpoint_send_to(NULL, "x", "x", 1, 0), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_endpoint_recv(NULL, buf, sizeof buf, &len, &env, 0),
           ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_endpoint_request(NULL, "x", "x", 1, buf, sizeof buf, &len, 1),
           ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_endpoint_reply(NULL, &env, "x", 1), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(atbus_endpoint_fd(NULL) == ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(atbus_endpoint_arm(NULL) == ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_bus_members(NULL, names, 8, &count), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_bus_members(bus, names, 8, NULL), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_bus_members(bus, NULL, 8, &count), ATBUS_ERR_INVALID_ARGUMENT);
    atbus_endpoint_close(NULL);
    atbus_bus_close(NULL);

    /* ---- NAME_TAKEN: a name held by a live endpoint (of this very process). */
    OK(atbus_bus_join(bus, "alpha", &alpha));
    EXPECT(atbus_bus_join(bus, "alpha", &ep), ATBUS_ERR_NAME_TAKEN);
    CHECK(ep == NULL);
    {
        char expect[64];
        snprintf(expect, sizeof expect, "held by live process %d", (int)getpid());
        CHECK(contains(atbus_last_error(), expect));
    }
    CHECK(strcmp(atbus_strerror(ATBUS_ERR_NAME_TAKEN), "endpoint name held by a live process") ==
          0);
    OK(atbus_bus_join(bus, "beta", &beta));

    /* ---- bad arguments on a live endpoint. */
    EXPECT(atbus_endpoint_send_to(alpha, NULL, "x", 1, 0), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_endpoint_send_to(alpha, "beta", NULL, 1, 0), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_endpoint_recv(beta, NULL, 1, &len, &env, 0), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_endpoint_recv(beta, buf, sizeof buf, NULL, &env, 0),
           ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_endpoint_recv(beta, buf, sizeof buf, &len, NULL, 0),
           ATBUS_ERR_INVALID_ARGUMENT);
    /* A request waits for its reply: timeout 0 is refused, nothing is sent. */
    EXPECT(atbus_endpoint_request(alpha, "beta", "x", 1, buf, sizeof buf, &len, 0),
           ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(contains(atbus_last_error(), "timeout_ms 0"));

    /* ---- NO_SUCH_ENDPOINT, at once. */
    EXPECT(atbus_endpoint_send_to(alpha, "nobody", "x", 1, UINT64_MAX),
           ATBUS_ERR_NO_SUCH_ENDPOINT);
    CHECK(contains(atbus_last_error(), "no endpoint \"nobody\""));
    EXPECT(atbus_endpoint_request(alpha, "nobody", "x", 1, buf, sizeof buf, &len, UINT64_MAX),
           ATBUS_ERR_NO_SUCH_ENDPOINT);

    /* ---- EMPTY with timeout 0, TIMEOUT with a timeout. */
    EXPECT(atbus_endpoint_recv(beta, buf, sizeof buf, &len, &env, 0), ATBUS_ERR_EMPTY);
    CHECK(len == 0 && strcmp(atbus_last_error(), "no message ready") == 0);
    EXPECT(atbus_endpoint_recv(beta, buf, sizeof buf, &len, &env, 20), ATBUS_ERR_TIMEOUT);
    CHECK(atbus_endpoint_arm(beta) == 0);

    /* ---- BUFFER_TOO_SMALL on recv: the message is kept and comes next, in order. */
    for (i = 0; i < sizeof small; i++) {
        small[i] = (uint8_t)(i * 7 + 1);
    }
    OK(atbus_endpoint_send_to(alpha, "beta", small, sizeof small, 0));
    OK(atbus_endpoint_send_to(alpha, "beta", "after", 5, 0));
    EXPECT(atbus_endpoint_recv(beta, buf, 100, &len, &env, 0), ATBUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == sizeof small);
    CHECK(contains(atbus_last_error(), "has 300 bytes but the buffer holds 100"));
    EXPECT(atbus_endpoint_recv(beta, NULL, 0, &len, &env, 0), ATBUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == sizeof small);
    CHECK(atbus_endpoint_arm(beta) == 1); /* a kept message is ready */
    memset(&env, 0xff, sizeof env);
    OK(atbus_endpoint_recv(beta, buf, sizeof buf, &len, &env, 0));
    CHECK(len == sizeof small && memcmp(buf, small, sizeof small) == 0);
    CHECK(env.kind == ATBUS_MSG_DATA && env.correlation == 0 && env.from_generation != 0);
    CHECK(env.from_pid == (uint32_t)getpid() && strcmp(env.from, "alpha") == 0);
    for (i = strlen("alpha"); i < sizeof env.from; i++) {
        CHECK(env.from[i] == '\0');
    }
    OK(atbus_endpoint_recv(beta, buf, sizeof buf, &len, &env, 0));
    CHECK(len == 5 && memcmp(buf, "after", 5) == 0);
    EXPECT(atbus_endpoint_recv(beta, buf, sizeof buf, &len, &env, 0), ATBUS_ERR_EMPTY);

    /* ---- reply: only to a request's envelope, with a NUL-terminated name. */
    EXPECT(atbus_endpoint_reply(beta, &env, "x", 1), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(contains(atbus_last_error(), "not ATBUS_MSG_REQUEST"));
    EXPECT(atbus_endpoint_reply(beta, NULL, "x", 1), ATBUS_ERR_INVALID_ARGUMENT);
    forged = env;
    forged.kind = ATBUS_MSG_REQUEST;
    memset(forged.from, 'a', sizeof forged.from);
    EXPECT(atbus_endpoint_reply(beta, &forged, "x", 1), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(contains(atbus_last_error(), "not NUL-terminated"));
    strcpy(forged.from, "a b");
    EXPECT(atbus_endpoint_reply(beta, &forged, "x", 1), ATBUS_ERR_INVALID_ARGUMENT);

    /* ---- FULL with timeout 0 (nothing sent), TIMEOUT with a timeout. */
    memset(big, 0x33, sizeof big);
    for (sent = 0; sent < 100; sent++) {
        rc = atbus_endpoint_send_to(alpha, "beta", big, sizeof big, 0);
        if (rc != ATBUS_OK) {
            break;
        }
    }
    EXPECT(rc, ATBUS_ERR_FULL);
    CHECK(sent >= 4 && sent < 100);
    CHECK(contains(atbus_last_error(), "inbox is full"));
    EXPECT(atbus_endpoint_send_to(alpha, "beta", big, sizeof big, 20), ATBUS_ERR_TIMEOUT);
    for (drained = 0;; drained++) {
        rc = atbus_endpoint_recv(beta, big, sizeof big, &len, &env, 0);
        if (rc != ATBUS_OK) {
            break;
        }
        CHECK(len == sizeof big && strcmp(env.from, "alpha") == 0);
    }
    EXPECT(rc, ATBUS_ERR_EMPTY);
    CHECK(drained == sent);

    /* ---- BUFFER_TOO_SMALL on request: the reply comes through recv. */
    OK(atbus_bus_join(bus, "echo", &echo));
    e.ep = echo;
    CHECK(pthread_create(&thread, NULL, echo_once, &e) == 0);
    EXPECT(atbus_endpoint_request(alpha, "echo", "ping", 4, buf, 10, &len, 30000),
           ATBUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == REPLY_LEN);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(atbus_endpoint_arm(alpha) == 1);
    EXPECT(atbus_endpoint_recv(alpha, buf, 10, &len, &env, 0), ATBUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == REPLY_LEN);
    OK(atbus_endpoint_recv(alpha, buf, sizeof buf, &len, &env, 0));
    CHECK(len == REPLY_LEN && env.kind == ATBUS_MSG_REPLY && strcmp(env.from, "echo") == 0);
    CHECK(env.correlation == e.request.correlation && env.correlation != 0);
    for (i = 0; i < REPLY_LEN; i++) {
        CHECK(buf[i] == 0x5A);
    }
    EXPECT(atbus_endpoint_recv(alpha, buf, sizeof buf, &len, &env, 0), ATBUS_ERR_EMPTY);

    /* ---- members: BUFFER_TOO_SMALL with the count needed, nothing written. */
    memset(names, 'x', sizeof names);
    EXPECT(atbus_bus_members(bus, NULL, 0, &count), ATBUS_ERR_BUFFER_TOO_SMALL);
    CHECK(count == 3);
    EXPECT(atbus_bus_members(bus, names, 2, &count), ATBUS_ERR_BUFFER_TOO_SMALL);
    CHECK(count == 3 && names[0][0] == 'x' && names[1][63] == 'x');
    CHECK(contains(atbus_last_error(), "3 live members but names holds 2"));
    OK(atbus_bus_members(bus, names, 8, &count));
    CHECK(count == 3 && names[3][0] == 'x');
    {
        int seen_alpha = 0, seen_beta = 0, seen_echo = 0;
        for (i = 0; i < count; i++) {
            CHECK(memchr(names[i], '\0', 64) != NULL);
            seen_alpha += strcmp(names[i], "alpha") == 0;
            seen_beta += strcmp(names[i], "beta") == 0;
            seen_echo += strcmp(names[i], "echo") == 0;
        }
        CHECK(seen_alpha == 1 && seen_beta == 1 && seen_echo == 1);
    }
    atbus_endpoint_close(echo);
    OK(atbus_bus_members(bus, names, 8, &count));
    CHECK(count == 2);

    /* ---- unlink removes the directory and every inbox, endpoints still joined. */
    CHECK(atbus_endpoint_fd(beta) >= 0); /* beta's inbox gets its doorbell FIFO too */
    CHECK(objects_of(name) >= 3);
    OK(atbus_bus_unlink(name));
    if (objects_of(name) != 0) {
        fprintf(stderr, "%d objects of %s left in /dev/shm after atbus_bus_unlink\n",
                objects_of(name), name);
        exit(1);
    }
    EXPECT(atbus_bus_open(name, 0, &none), ATBUS_ERR_NOT_FOUND);
    EXPECT(atbus_bus_unlink(name), ATBUS_ERR_NOT_FOUND);
    atbus_endpoint_close(alpha);
    atbus_endpoint_close(beta);
    atbus_bus_close(bus);
    CHECK(objects_of(name) == 0);
    printf("bus errors ok\n");
    return 0;
}
