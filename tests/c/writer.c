/* A C writer process: THREADS threads share one handle; thread t sends COUNT messages
 * atbus_tests::payload(ID_BASE + t, seq, atbus_tests::length(ID_BASE + t, seq, MIN, MAX))
 * in order, waiting while the ring is full.
 *
 * usage: writer NAME ID_BASE THREADS COUNT MIN MAX */
#include <pthread.h>
#include <string.h>

#include "common.h"

struct job {
    atbus_channel *ch;
    uint64_t id, count;
    size_t min, max;
};

static void *send_all(void *arg) {
    const struct job *job = (const struct job *)arg;
    uint8_t *msg = (uint8_t *)malloc(job->max);
    uint64_t seq;
    CHECK(msg != NULL);
    for (seq = 0; seq < job->count; seq++) {
        size_t len = payload_length(job->id, seq, job->min, job->max);
        fill_payload(msg, job->id, seq, len);
        /* Waits (spinning, yielding, then sleeping) while the reader catches up. */
        OK(atbus_send_timeout(job->ch, msg, len, 60000));
    }
    free(msg);
    return NULL;
}

int main(int argc, char **argv) {
    atbus_channel *ch = NULL;
    struct job jobs[16];
    pthread_t threads[16];
    uint64_t id_base, nthreads, t;

    CHECK(argc == 7);
    id_base = parse_u64(argv[2]);
    nthreads = parse_u64(argv[3]);
    CHECK(nthreads >= 1 && nthreads <= 16);
    OK(atbus_open(argv[1], &ch));
    for (t = 0; t < nthreads; t++) {
        jobs[t].ch = ch;
        jobs[t].id = id_base + t;
        jobs[t].count = parse_u64(argv[4]);
        jobs[t].min = (size_t)parse_u64(argv[5]);
        jobs[t].max = (size_t)parse_u64(argv[6]);
        CHECK(jobs[t].min >= 16 && jobs[t].min <= jobs[t].max);
        CHECK(pthread_create(&threads[t], NULL, send_all, &jobs[t]) == 0);
    }
    for (t = 0; t < nthreads; t++) {
        CHECK(pthread_join(threads[t], NULL) == 0);
    }
    atbus_close(ch);
    printf("sent %llu\n", (unsigned long long)(nthreads * jobs[0].count));
    return 0;
}
