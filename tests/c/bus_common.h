/* What the bus test programs (bus_server.c, bus_client.c) agree on: the ids of their
 * payloads and the reply the server must give to each request. */
#ifndef ATBUS_TEST_BUS_COMMON_H
#define ATBUS_TEST_BUS_COMMON_H

#include <string.h>

#include "common.h"

/* Client k's requests carry payloads of writer id REQUEST_ID + k, its data messages
 * payloads of writer id DATA_ID + k (see common.h), 16 to 2000 bytes, so every byte is
 * checked on arrival. */
#define REQUEST_ID 1000u
#define DATA_ID 2000u
#define MIN_LEN 16u
#define MAX_LEN 2000u

/* The reply to a request of `len` bytes: the request's bytes reversed, each xor 0xA5,
 * then one byte holding len mod 256. `out` has room for len + 1 bytes. */
static inline size_t reply_for(const uint8_t *req, size_t len, uint8_t *out) {
    size_t i;
    for (i = 0; i < len; i++) {
        out[i] = (uint8_t)(req[len - 1 - i] ^ 0xA5);
    }
    out[len] = (uint8_t)(len & 0xff);
    return len + 1;
}

/* The endpoint name of client k. */
static inline void client_name(char out[64], uint64_t k) {
    snprintf(out, 64, "client-%llu", (unsigned long long)k);
}

#endif /* ATBUS_TEST_BUS_COMMON_H */
