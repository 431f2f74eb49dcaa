/* A client of bus_server.c, run as several processes at once. Joins the bus as
 * "client-K", then:
 *   - joining SERVER's name fails with ATBUS_ERR_NAME_TAKEN (a live process holds it);
 *   - a request and a send to an endpoint that is not there fail with
 *     ATBUS_ERR_NO_SUCH_ENDPOINT at once;
 *   - REQUESTS requests (payloads of writer REQUEST_ID + K), each reply checked byte for
 *     byte against reply_for(); the first with a reply buffer too small for the reply,
 *     which then arrives through atbus_endpoint_recv as an ATBUS_MSG_REPLY from SERVER;
 *   - DATA data messages (payloads of writer DATA_ID + K) sent with
 *     atbus_endpoint_send_to, interleaved with the requests.
 * prints: "client K requests R data D reply_bytes B"
 *
 * With "wait" instead of REQUESTS and DATA: one request with a 10 s timeout, which must
 * end in ATBUS_ERR_PEER_GONE (the test kills the server meanwhile); prints "peer gone".
 *
 * usage: bus_client BUS SERVER K REQUESTS DATA
 *        bus_client BUS SERVER K wait */
#include "bus_common.h"

static void check_reply(const uint8_t *req, size_t len, const uint8_t *got, size_t got_len,
                        uint8_t *expect, uint64_t k, uint64_t seq) {
    size_t i, n = reply_for(req, len, expect);
    if (got_len != n) {
        fprintf(stderr, "client %llu request %llu: reply of %zu bytes, expected %zu\n",
                (unsigned long long)k, (unsigned long long)seq, got_len, n);
        exit(1);
    }
    for (i = 0; i < n; i++) {
        if (got[i] != expect[i]) {
            fprintf(stderr, "client %llu request %llu: reply differs at byte %zu\n",
                    (unsigned long long)k, (unsigned long long)seq, i);
            exit(1);
        }
    }
}

int main(int argc, char **argv) {
    atbus_bus *bus;
    atbus_endpoint *ep, *taken = (atbus_endpoint *)&argc;
    atbus_envelope env;
    char name[64];
    const char *server;
    uint64_t k, requests, data, i, reply_bytes = 0;
    size_t cap = MAX_LEN + 1, len, got;
    uint8_t *msg = (uint8_t *)malloc(cap), *reply = (uint8_t *)malloc(cap),
            *expect = (uint8_t *)malloc(cap);

    CHECK((argc == 6 || (argc == 5 && strcmp(argv[4], "wait") == 0)) && msg && reply &&
          expect);
    server = argv[2];
    k = parse_u64(argv[3]);
    client_name(name, k);
    OK(atbus_bus_open(argv[1], 0, &bus));
    OK(atbus_bus_join(bus, name, &ep));

    if (argc == 5) {
        len = payload_length(REQUEST_ID + k, 0, MIN_LEN, MAX_LEN);
        fill_payload(msg, REQUEST_ID + k, 0, len);
        EXPECT(atbus_endpoint_request(ep, server, msg, len, reply, cap, &got, 10000),
               ATBUS_ERR_PEER_GONE);
        CHECK(strstr(atbus_last_error(), "left the bus or died") != NULL);
        atbus_endpoint_close(ep);
        atbus_bus_close(bus);
        printf("peer gone\n");
        return 0;
    }
    requests = parse_u64(argv[4]);
    data = parse_u64(argv[5]);

    /* The server's name is held by a live process: refused, and *out set to NULL. */
    EXPECT(atbus_bus_join(bus, server, &taken), ATBUS_ERR_NAME_TAKEN);
    CHECK(taken == NULL);
    CHECK(strstr(atbus_last_error(), "is held by live process") != NULL);
    /* Nobody of that name: at once, not after the timeout. */
    EXPECT(atbus_endpoint_request(ep, "nobody", "x", 1, reply, cap, &got, UINT64_MAX),
           ATBUS_ERR_NO_SUCH_ENDPOINT);
    EXPECT(atbus_endpoint_send_to(ep, "nobody", "x", 1, UINT64_MAX),
           ATBUS_ERR_NO_SUCH_ENDPOINT);

    for (i = 0; i < requests || i < data; i++) {
        if (i < data) {
            len = payload_length(DATA_ID + k, i, MIN_LEN, MAX_LEN);
            fill_payload(msg, DATA_ID + k, i, len);
            OK(atbus_endpoint_send_to(ep, server, msg, len, UINT64_MAX));
        }
        if (i >= requests) {
            continue;
        }
        len = payload_length(REQUEST_ID + k, i, MIN_LEN, MAX_LEN);
        fill_payload(msg, REQUEST_ID + k, i, len);
        if (i == 0) {
            /* A reply too large for the buffer is kept, and atbus_endpoint_recv returns it. */
            EXPECT(atbus_endpoint_request(ep, server, msg, len, reply, 8, &got, 30000),
                   ATBUS_ERR_BUFFER_TOO_SMALL);
            CHECK(got == len + 1);
            CHECK(atbus_endpoint_arm(ep) == 1);
            EXPECT(atbus_endpoint_recv(ep, reply, cap, &got, &env, 0), ATBUS_OK);
            CHECK(env.kind == ATBUS_MSG_REPLY && strcmp(env.from, server) == 0);
            CHECK(env.correlation != 0 && env.from_generation != 0);
        } else {
            OK(atbus_endpoint_request(ep, server, msg, len, reply, cap, &got, 30000));
        }
        check_reply(msg, len, reply, got, expect, k, i);
        reply_bytes += got;
    }
    /* Nothing else was sent to this endpoint. */
    EXPECT(atbus_endpoint_recv(ep, reply, cap, &got, &env, 0), ATBUS_ERR_EMPTY);
    atbus_endpoint_close(ep);
    atbus_bus_close(bus);
    free(msg);
    free(reply);
    free(expect);
    printf("client %llu requests %llu data %llu reply_bytes %llu\n", (unsigned long long)k,
           (unsigned long long)requests, (unsigned long long)data,
           (unsigned long long)reply_bytes);
    return 0;
}
