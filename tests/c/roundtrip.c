/* Round trip through the C ABI in one process: create with a configuration, send
 * messages of many sizes (empty, one byte, node boundaries, the largest allowed),
 * receive each one and check every byte, read the stats, close, reopen, unlink.
 *
 * usage: roundtrip NAME */
#include <string.h>

#include "common.h"

int main(int argc, char **argv) {
    const char *name;
    atbus_config config;
    atbus_channel *ch = NULL;
    atbus_channel *again = NULL;
    atbus_stats stats = { .size = sizeof stats };
    uint8_t *msg, *buf;
    size_t max, len, got;
    uint64_t id, seq, rseq, sent = 0, bytes = 0;
    static const size_t sizes[] = {16, 17, 95, 96, 97, 127, 128, 129, 1000, 4096, 10000};

    CHECK(argc == 2);
    name = argv[1];

    OK(atbus_config_init(&config));
    CHECK(config.size == sizeof(atbus_config));
    CHECK(config.node_size == 128);
    CHECK(config.timeout_ms == 1000);
    CHECK(config.write_retries == 4);
    CHECK(config.mode == 0600);
    CHECK(config.protect_bytes == 0);
    CHECK(config.detect_dead_writers);
    CHECK(config.checksums);
    config.node_size = 256;
    config.timeout_ms = 250;
    OK(atbus_create(name, 1 << 20, &config, &ch));
    CHECK(ch != NULL);
    max = atbus_max_message_len(ch);
    CHECK(max > 10000 && max < (1 << 20));

    msg = (uint8_t *)malloc(max);
    buf = (uint8_t *)malloc(max);
    CHECK(msg != NULL && buf != NULL);

    /* An empty message, with a NULL data pointer, arrives as an empty message. */
    OK(atbus_send(ch, NULL, 0));
    got = 12345;
    OK(atbus_recv(ch, buf, max, &got));
    CHECK(got == 0);
    sent++;

    /* A one-byte message, and an empty one received with a NULL buffer of capacity 0. */
    OK(atbus_send(ch, "x", 1));
    OK(atbus_send(ch, "", 0));
    OK(atbus_recv(ch, buf, 1, &got));
    CHECK(got == 1 && buf[0] == 'x');
    OK(atbus_recv(ch, NULL, 0, &got));
    CHECK(got == 0);
    sent += 2;
    bytes += 1;

    /* Many sizes, several laps of the ring, every byte checked. */
    for (seq = 0; seq < 3000; seq++) {
        len = seq < sizeof sizes / sizeof sizes[0] ? sizes[seq] : payload_length(7, seq, 16, 3000);
        fill_payload(msg, 7, seq, len);
        OK(atbus_send(ch, msg, len));
        memset(buf, 0, len);
        OK(atbus_recv(ch, buf, max, &got));
        CHECK(got == len);
        CHECK(check_payload(buf, got, &id, &rseq) == 0);
        CHECK(id == 7 && rseq == seq);
        sent++;
        bytes += len;
    }

    /* The largest message fits; one byte more never does. */
    fill_payload(msg, 8, 0, max);
    OK(atbus_send(ch, msg, max));
    EXPECT(atbus_send(ch, msg, max + 1), ATBUS_ERR_TOO_LARGE);
    OK(atbus_recv(ch, buf, max, &got));
    CHECK(got == max && memcmp(buf, msg, max) == 0);
    sent++;
    bytes += max;
    EXPECT(atbus_recv(ch, buf, max, &got), ATBUS_ERR_EMPTY);
    CHECK(got == 0);

    /* A batch: one claim for several messages, each received as an ordinary one, in
     * order, every byte checked; more than ATBUS_BATCH_MAX take several calls. */
    {
        static uint8_t store[ATBUS_BATCH_MAX + 6][300];
        atbus_message batch[ATBUS_BATCH_MAX + 6];
        size_t n = ATBUS_BATCH_MAX + 6, done = 0, k, i;
        for (i = 0; i < n; i++) {
            batch[i].len = payload_length(10, i, 16, 300);
            fill_payload(store[i], 10, i, batch[i].len);
            batch[i].data = store[i];
        }
        while (done < n) {
            OK(atbus_send_batch(ch, batch + done, n - done, &k));
            CHECK(k >= 1 && k <= ATBUS_BATCH_MAX && k <= n - done);
            for (i = done; i < done + k; i++) {
                OK(atbus_recv(ch, buf, max, &got));
                CHECK(got == batch[i].len);
                CHECK(check_payload(buf, got, &id, &rseq) == 0);
                CHECK(id == 10 && rseq == i);
                sent++;
                bytes += got;
            }
            done += k;
        }
        OK(atbus_send_batch(ch, NULL, 0, &k));
        CHECK(k == 0);
        /* A first message too large fails the call; nothing is sent. */
        batch[0].data = msg;
        batch[0].len = max + 1;
        EXPECT(atbus_send_batch(ch, batch, 2, &k), ATBUS_ERR_TOO_LARGE);
        CHECK(k == 0);
        EXPECT(atbus_send_batch(ch, batch, 2, NULL), ATBUS_ERR_INVALID_ARGUMENT);
        EXPECT(atbus_recv(ch, buf, max, &got), ATBUS_ERR_EMPTY);
    }

    /* A second handle on the same channel sends; the first one receives. */
    OK(atbus_open(name, &again));
    fill_payload(msg, 9, 0, 100);
    OK(atbus_send(again, msg, 100));
    OK(atbus_recv(ch, buf, max, &got));
    CHECK(got == 100 && memcmp(buf, msg, 100) == 0);
    sent++;
    bytes += 100;

    OK(atbus_get_stats(again, &stats));
    CHECK(stats.messages_sent == sent);
    CHECK(stats.messages_received == sent);
    CHECK(stats.bytes_sent == bytes);
    CHECK(stats.bytes_received == bytes);
    CHECK(stats.bad_nodes == 0 && stats.bad_blocks == 0);
    CHECK(stats.padding_claims > 0 && stats.padding_claims == stats.padding_blocks);
    CHECK(stats.write_cursor > 0);

    atbus_close(again);
    atbus_close(ch);
    /* The channel outlives its handles, until it is unlinked. */
    OK(atbus_open(name, &ch));
    OK(atbus_get_stats(ch, &stats));
    CHECK(stats.messages_received == sent);
    atbus_close(ch);
    OK(atbus_unlink(name));
    EXPECT(atbus_open(name, &ch), ATBUS_ERR_NOT_FOUND);
    CHECK(ch == NULL);
    free(msg);
    free(buf);
    printf("roundtrip ok: %llu messages, %llu bytes\n", (unsigned long long)sent,
           (unsigned long long)bytes);
    return 0;
}
