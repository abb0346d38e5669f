/*
 * server_stats.c -- the per-server counters from C, as a program that draws
 * its own view of a cluster (or a LabVIEW cluster of U64/I64) reads them:
 * streamer_server_stats with NULLs, an index out of range (SIZE_MAX too),
 * sizes 0, 4, 8, a prefix, the full struct and a larger buffer; its counts
 * after a run against streamer_stats; and reads from the completion callback
 * while streamer_close runs.
 *
 * Usage: server_stats HOST:PORT HOST:PORT
 *   two running data servers (files go under server_stats/<pid>/)
 * Prints every failed check and a final line "N passed, M failed"; exits
 * non-zero when any check failed.
 */
#include <pyme_streaming.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                     \
    do {                                                                \
        if (cond) {                                                     \
            passed++;                                                   \
        } else {                                                        \
            failed++;                                                   \
            fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                               \
    } while (0)

#define CHECK_STATUS(expr, expected)                                      \
    do {                                                                  \
        int32_t got_ = (expr);                                            \
        if (got_ == (expected)) {                                         \
            passed++;                                                     \
        } else {                                                          \
            failed++;                                                     \
            fprintf(stderr, "FAILED %s:%d: %s returned %d (%s), expected %s\n", \
                    __FILE__, __LINE__, #expr, (int)got_, streamer_status_str(got_), #expected); \
        }                                                                 \
    } while (0)

#define N_FILES 300
#define FILLER 0xA5A5A5A5A5A5A5A5ull

static int add_server(PymeStreamerOptions *options, const char *text) {
    char host[256];
    const char *colon = strrchr(text, ':');
    size_t host_len;
    long port;
    if (colon == NULL) return 0;
    host_len = (size_t)(colon - text);
    if (host_len == 0 || host_len >= sizeof host) return 0;
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535) return 0;
    return streamer_options_add_server(options, host, (uint16_t)port) == STREAMER_OK;
}

/* What the completion callback saw (library threads: guarded). */
typedef struct {
    pthread_mutex_t lock;
    PymeStreamer *streamer;
    int calls;
    int reads_ok;      /* streamer_server_stats returned STREAMER_OK with its file counted */
    int out_of_range;  /* SIZE_MAX refused with STREAMER_ERR_INVALID_ARGUMENT */
} Seen;

static void on_complete(void *user_data, const char *name, size_t server_index, int32_t status,
                        int32_t http_status, uint64_t bytes) {
    Seen *seen = (Seen *)user_data;
    PymeStreamerServerStats stats;
    int32_t read;
    int32_t refused;
    (void)name;
    (void)status;
    (void)http_status;
    (void)bytes;
    memset(&stats, 0, sizeof stats);
    read = streamer_server_stats(seen->streamer, server_index, &stats, sizeof stats);
    refused = streamer_server_stats(seen->streamer, SIZE_MAX, &stats, sizeof stats);
    pthread_mutex_lock(&seen->lock);
    seen->calls++;
    if (read == STREAMER_OK && stats.size == sizeof stats && stats.files_acknowledged >= 1) seen->reads_ok++;
    if (refused == STREAMER_ERR_INVALID_ARGUMENT) seen->out_of_range++;
    pthread_mutex_unlock(&seen->lock);
}

/* A cluster as LabVIEW would make it: only 64-bit fields, in order. */
typedef struct {
    uint64_t size;
    int64_t state;
    uint64_t counters[13];
} LabviewCluster;

static void check_sizes(PymeStreamer *streamer) {
    uint64_t memory[24];
    PymeStreamerServerStats stats;
    size_t i;
    char message[256];

    CHECK(sizeof(PymeStreamerServerStats) == 15 * 8);
    CHECK(sizeof(LabviewCluster) == sizeof(PymeStreamerServerStats));
    CHECK(offsetof(PymeStreamerServerStats, state) == 8);
    CHECK(offsetof(PymeStreamerServerStats, files_acknowledged) == 16);
    CHECK(offsetof(PymeStreamerServerStats, moved_away) == 14 * 8);

    CHECK_STATUS(streamer_server_stats(NULL, 0, &stats, sizeof stats), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_server_stats(streamer, 0, NULL, sizeof stats), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_server_stats(streamer, 2, &stats, sizeof stats), STREAMER_ERR_INVALID_ARGUMENT);
    streamer_last_error(streamer, message, sizeof message, NULL);
    CHECK(strstr(message, "out of range") != NULL);
    CHECK_STATUS(streamer_server_stats(streamer, SIZE_MAX, &stats, sizeof stats), STREAMER_ERR_INVALID_ARGUMENT);

    /* Too small to hold `size`: refused, nothing written. */
    for (i = 0; i < 24; i++) memory[i] = FILLER;
    CHECK_STATUS(streamer_server_stats(streamer, 0, (PymeStreamerServerStats *)memory, 0),
                 STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_server_stats(streamer, 0, (PymeStreamerServerStats *)memory, 4),
                 STREAMER_ERR_INVALID_ARGUMENT);
    CHECK(memory[0] == FILLER);

    /* Size 8: `size` only. */
    CHECK_STATUS(streamer_server_stats(streamer, 0, (PymeStreamerServerStats *)memory, 8), STREAMER_OK);
    CHECK(memory[0] == 8);
    CHECK(memory[1] == FILLER);

    /* An older caller whose struct ended after `files_acknowledged`. */
    for (i = 0; i < 24; i++) memory[i] = FILLER;
    CHECK_STATUS(streamer_server_stats(streamer, 0, (PymeStreamerServerStats *)memory, 3 * 8), STREAMER_OK);
    CHECK(memory[0] == 24);
    CHECK(memory[1] == (uint64_t)STREAMER_SERVER_UP);
    CHECK(memory[2] != FILLER);
    CHECK(memory[3] == FILLER);

    /* A newer caller with a larger struct: the library writes its own size. */
    for (i = 0; i < 24; i++) memory[i] = FILLER;
    CHECK_STATUS(streamer_server_stats(streamer, 1, (PymeStreamerServerStats *)memory, sizeof memory), STREAMER_OK);
    CHECK(memory[0] == sizeof(PymeStreamerServerStats));
    CHECK(memory[15] == FILLER);
    CHECK(memory[23] == FILLER);
}

int main(int argc, char **argv) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats totals;
    PymeStreamerServerStats each[2];
    LabviewCluster cluster;
    uint64_t acknowledged = 0, bytes = 0, sent = 0;
    char name[128];
    uint8_t data[1000];
    Seen seen;
    int i;

    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST:PORT HOST:PORT\n", argv[0]);
        return 2;
    }
    memset(&seen, 0, sizeof seen);
    pthread_mutex_init(&seen.lock, NULL);
    memset(data, 7, sizeof data);

    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK(add_server(options, argv[1]));
    CHECK(add_server(options, argv[2]));
    CHECK_STATUS(streamer_options_set_completion(options, on_complete, &seen), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    streamer_options_free(options);
    if (streamer == NULL) {
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }
    pthread_mutex_lock(&seen.lock);
    seen.streamer = streamer;
    pthread_mutex_unlock(&seen.lock);

    check_sizes(streamer);

    for (i = 0; i < N_FILES; i++) {
        snprintf(name, sizeof name, "server_stats/%ld/f%d", (long)getpid(), i);
        CHECK_STATUS(streamer_put(streamer, name, data, (size_t)(100 + i), -1), STREAMER_OK);
    }
    CHECK_STATUS(streamer_flush(streamer, STREAMER_WAIT_FOREVER), STREAMER_OK);
    CHECK_STATUS(streamer_stats(streamer, &totals, sizeof totals), STREAMER_OK);
    for (i = 0; i < 2; i++) {
        CHECK_STATUS(streamer_server_stats(streamer, (size_t)i, &each[i], sizeof each[i]), STREAMER_OK);
        CHECK(each[i].size == sizeof each[i]);
        CHECK(each[i].state == STREAMER_SERVER_UP);
        CHECK(each[i].files_acknowledged > 0);
        CHECK(each[i].files_failed == 0);
        CHECK(each[i].in_flight_files == 0 && each[i].queue_files == 0);
        acknowledged += each[i].files_acknowledged;
        bytes += each[i].bytes_acknowledged;
        sent += each[i].bytes_sent;
    }
    CHECK(acknowledged == N_FILES);
    CHECK(acknowledged == totals.files_acknowledged);
    CHECK(bytes == totals.bytes_acknowledged);
    CHECK(sent == totals.bytes_sent);

    /* The LabVIEW view of the same call. */
    CHECK_STATUS(streamer_server_stats(streamer, 1, (PymeStreamerServerStats *)&cluster, sizeof cluster),
                 STREAMER_OK);
    CHECK(cluster.size == sizeof cluster);
    CHECK(cluster.counters[0] == each[1].files_acknowledged);

    /* Files whose callbacks run while streamer_close waits for them. */
    for (i = 0; i < 50; i++) {
        snprintf(name, sizeof name, "server_stats/%ld/late%d", (long)getpid(), i);
        CHECK_STATUS(streamer_put(streamer, name, data, 10, -1), STREAMER_OK);
    }
    CHECK_STATUS(streamer_close(streamer), STREAMER_OK);
    CHECK(seen.calls == N_FILES + 50);
    CHECK(seen.reads_ok == N_FILES + 50);
    CHECK(seen.out_of_range == N_FILES + 50);
    pthread_mutex_destroy(&seen.lock);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
