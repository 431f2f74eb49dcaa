/* Helpers shared by the C tests of the atbus C ABI: checks that exit with a message, and
 * the predictable payloads of atbus_tests::payload / atbus_tests::length (same formulas,
 * so Rust and C check each other's every byte). */
#ifndef ATBUS_TEST_COMMON_H
#define ATBUS_TEST_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "atbus.h"

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s (atbus_last_error: %s)\n",       \
                    __FILE__, __LINE__, #cond, atbus_last_error());                    \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* Evaluates `expr` once and checks it returned `code`. */
#define EXPECT(expr, code)                                                             \
    do {                                                                               \
        int32_t rc_ = (expr);                                                          \
        if (rc_ != (code)) {                                                           \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s = %d\n"           \
                            "  atbus_last_error: %s\n",                                \
                    __FILE__, __LINE__, #expr, (int)rc_, atbus_strerror(rc_), #code,   \
                    (int)(code), atbus_last_error());                                  \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

#define OK(expr) EXPECT(expr, ATBUS_OK)

/* Message `seq` of writer `id`, `len` >= 16 bytes: id and seq as little-endian u64s,
 * then xorshift64 bytes seeded by both (atbus_tests::fill_payload). */
static inline void fill_payload(uint8_t *out, uint64_t id, uint64_t seq, size_t len) {
    size_t i;
    uint64_t x = (((id << 40) ^ seq) * UINT64_C(0x9E3779B97F4A7C15)) | 1;
    for (i = 0; i < 8; i++) {
        out[i] = (uint8_t)(id >> (8 * i));
        out[8 + i] = (uint8_t)(seq >> (8 * i));
    }
    for (i = 16; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = (uint8_t)x;
    }
}

/* Length of message `seq` of writer `id`, in min..=max (atbus_tests::length). */
static inline size_t payload_length(uint64_t id, uint64_t seq, size_t min, size_t max) {
    uint64_t x = ((id * UINT64_C(0x2545F4914F6CDD1D)) ^ seq) + UINT64_C(0x9E3779B9);
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return min + (size_t)(x % (uint64_t)(max - min + 1));
}

/* Checks every byte of a received message. Returns 0 and sets *id, *seq if it is a
 * payload, or prints where it differs and returns -1. */
static inline int check_payload(const uint8_t *msg, size_t len, uint64_t *id, uint64_t *seq) {
    size_t i;
    uint8_t *expect;
    if (len < 16) {
        fprintf(stderr, "message of %zu bytes is too short\n", len);
        return -1;
    }
    *id = 0;
    *seq = 0;
    for (i = 0; i < 8; i++) {
        *id |= (uint64_t)msg[i] << (8 * i);
        *seq |= (uint64_t)msg[8 + i] << (8 * i);
    }
    expect = (uint8_t *)malloc(len);
    CHECK(expect != NULL);
    fill_payload(expect, *id, *seq, len);
    for (i = 0; i < len; i++) {
        if (expect[i] != msg[i]) {
            fprintf(stderr, "writer %llu message %llu (%zu bytes) differs at byte %zu\n",
                    (unsigned long long)*id, (unsigned long long)*seq, len, i);
            free(expect);
            return -1;
        }
    }
    free(expect);
    return 0;
}

static inline uint64_t parse_u64(const char *s) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    CHECK(*s != '\0' && *end == '\0');
    return (uint64_t)v;
}

#endif /* ATBUS_TEST_COMMON_H */
