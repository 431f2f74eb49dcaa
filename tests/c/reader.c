/* A C reader process: receives WRITERS * COUNT messages from writers ID_BASE ..
 * ID_BASE + WRITERS - 1, checks every byte and that each writer's messages arrive in
 * order. Waits in atbus_recv_timeout; starts with a 64-byte buffer and grows it on
 * ATBUS_ERR_BUFFER_TOO_SMALL. Fails if no message arrives for 60 s.
 *
 * usage: reader NAME ID_BASE WRITERS COUNT */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <time.h>

#include "common.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    atbus_channel *ch = NULL;
    atbus_stats stats = { .size = sizeof stats };
    uint64_t id_base, writers, count, received = 0, bytes = 0, grown = 0, id, seq;
    uint64_t next[64] = {0};
    size_t cap = 64, len;
    uint8_t *buf;
    double last = now();

    CHECK(argc == 5);
    id_base = parse_u64(argv[2]);
    writers = parse_u64(argv[3]);
    count = parse_u64(argv[4]);
    CHECK(writers >= 1 && writers <= 64);
    OK(atbus_open(argv[1], &ch));
    buf = (uint8_t *)malloc(cap);
    CHECK(buf != NULL);
    while (received < writers * count) {
        /* Sleeps on the channel's futex when idle; writers wake it. */
        int32_t rc = atbus_recv_timeout(ch, buf, cap, &len, 1000);
        if (rc == ATBUS_ERR_TIMEOUT) {
            if (now() - last >= 60.0) {
                OK(atbus_get_stats(ch, &stats));
                fprintf(stderr,
                        "no message for 60 s after %llu of %llu: sent %llu received %llu "
                        "read %llu write %llu bad_nodes %llu bad_blocks %llu crc_failures %llu "
                        "check_failures %llu\n",
                        (unsigned long long)received, (unsigned long long)(writers * count),
                        (unsigned long long)stats.messages_sent,
                        (unsigned long long)stats.messages_received,
                        (unsigned long long)stats.read_cursor,
                        (unsigned long long)stats.write_cursor,
                        (unsigned long long)stats.bad_nodes,
                        (unsigned long long)stats.bad_blocks,
                        (unsigned long long)stats.crc_failures,
                        (unsigned long long)stats.check_failures);
                return 1;
            }
            continue;
        }
        if (rc == ATBUS_ERR_BUFFER_TOO_SMALL) {
            CHECK(len > cap);
            free(buf);
            cap = len;
            buf = (uint8_t *)malloc(cap);
            CHECK(buf != NULL);
            grown++;
            continue;
        }
        OK(rc);
        last = now();
        if (check_payload(buf, len, &id, &seq) != 0) {
            return 1;
        }
        CHECK(id >= id_base && id < id_base + writers);
        if (seq != next[id - id_base]) {
            fprintf(stderr, "writer %llu: message %llu arrived, expected %llu\n",
                    (unsigned long long)id, (unsigned long long)seq,
                    (unsigned long long)next[id - id_base]);
            return 1;
        }
        next[id - id_base]++;
        received++;
        bytes += len;
    }
    EXPECT(atbus_recv(ch, buf, cap, &len), ATBUS_ERR_EMPTY);
    OK(atbus_get_stats(ch, &stats));
    CHECK(stats.bad_nodes == 0 && stats.bad_blocks == 0);
    CHECK(stats.messages_received == received && stats.bytes_received == bytes);
    CHECK(grown > 0);
    atbus_close(ch);
    free(buf);
    printf("received %llu bytes %llu\n", (unsigned long long)received,
           (unsigned long long)bytes);
    return 0;
}
