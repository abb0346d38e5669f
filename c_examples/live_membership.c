/*
 * live_membership.c -- live membership from C: a streamer finds its servers
 * by serverfilter in a local registry (no multicast) and runs discovery again
 * every 200 ms (streamer_options_set_discovery_period_ms). A server
 * registered during the run joins: streamer_n_servers grows, the server-state
 * callback says STREAMER_SERVER_UP for the new index, the distribution
 * callback is given the new number of servers and the new server takes files.
 *
 * Usage: live_membership REGISTRY SERVERFILTER
 *   REGISTRY holds two servers of the cluster at start. The program prints
 *   "READY" once it has put its first files; the caller then registers a
 *   third server. Files go under live_membership/<pid>/.
 * Prints every failed check and a final line "N passed, M failed"; exits
 * non-zero when any check failed.
 */
#include <pyme_streaming.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
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

#define FIRST_FILES 40
#define LATER_FILES 120
/* How long to wait for the third server: many rounds of 200 ms. */
#define PATIENCE_S 60

/* What the callbacks saw (library threads and put: guarded). */
typedef struct {
    pthread_mutex_t lock;
    int third_up;          /* (2, STREAMER_SERVER_UP) reported */
    int first_of_third;    /* the first state reported for server 2, -1: none */
    size_t most_servers;   /* the largest n_servers the distribution was given */
    size_t to_third;       /* files the distribution placed on server 2 */
} Seen;

static void on_state(void *user_data, size_t server_index, int32_t state) {
    Seen *seen = (Seen *)user_data;
    pthread_mutex_lock(&seen->lock);
    if (server_index == 2) {
        if (seen->first_of_third < 0) seen->first_of_third = state;
        if (state == STREAMER_SERVER_UP) seen->third_up = 1;
    }
    pthread_mutex_unlock(&seen->lock);
}

static size_t distribute(void *user_data, size_t n_servers, int64_t index, const char *name) {
    Seen *seen = (Seen *)user_data;
    size_t chosen = index < 0 ? 0 : (size_t)index % n_servers;
    (void)name;
    pthread_mutex_lock(&seen->lock);
    if (n_servers > seen->most_servers) seen->most_servers = n_servers;
    if (chosen == 2) seen->to_third++;
    pthread_mutex_unlock(&seen->lock);
    return chosen;
}

static void put_files(PymeStreamer *streamer, int from, int to) {
    char name[128];
    char body[64];
    int i;
    for (i = from; i < to; i++) {
        snprintf(name, sizeof name, "live_membership/%ld/frame%05d.bin", (long)getpid(), i);
        snprintf(body, sizeof body, "frame %d", i);
        CHECK_STATUS(streamer_put(streamer, name, (const uint8_t *)body, strlen(body), i), STREAMER_OK);
    }
}

int main(int argc, char **argv) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats stats;
    Seen seen;
    int waited_ms = 0;
    struct timespec nap;

    if (argc != 3) {
        fprintf(stderr, "usage: %s REGISTRY SERVERFILTER\n", argv[0]);
        return 2;
    }
    memset(&seen, 0, sizeof seen);
    pthread_mutex_init(&seen.lock, NULL);
    seen.first_of_third = -1;
    nap.tv_sec = 0;
    nap.tv_nsec = 10 * 1000 * 1000;

    CHECK_STATUS(streamer_options_set_discovery_period_ms(NULL, 200), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    /* Before or after the serverfilter: either works. */
    CHECK_STATUS(streamer_options_set_discovery_period_ms(options, 200), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_serverfilter(options, argv[2]), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_discovery_sources(options, 0, argv[1]), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_server_callback(options, on_state, &seen), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_distribution(options, distribute, &seen), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    streamer_options_free(options);
    if (streamer == NULL) {
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }
    CHECK(streamer_n_servers(streamer) == 2);

    put_files(streamer, 0, FIRST_FILES);
    printf("READY\n");
    fflush(stdout);

    for (;;) {
        int up;
        pthread_mutex_lock(&seen.lock);
        up = seen.third_up;
        pthread_mutex_unlock(&seen.lock);
        if (up && streamer_n_servers(streamer) == 3) break;
        if (waited_ms >= PATIENCE_S * 1000) break;
        nanosleep(&nap, NULL);
        waited_ms += 10;
    }
    CHECK(streamer_n_servers(streamer) == 3);
    {
        int32_t state = -1;
        CHECK_STATUS(streamer_server_state(streamer, 2, &state), STREAMER_OK);
        CHECK(state == STREAMER_SERVER_UP);
    }

    put_files(streamer, FIRST_FILES, FIRST_FILES + LATER_FILES);
    CHECK_STATUS(streamer_close_stats(streamer, &stats, sizeof stats), STREAMER_OK);
    CHECK(stats.files_acknowledged == FIRST_FILES + LATER_FILES);
    CHECK(stats.files_failed == 0);

    pthread_mutex_lock(&seen.lock);
    CHECK(seen.first_of_third == STREAMER_SERVER_UP);
    CHECK(seen.most_servers == 3);
    CHECK(seen.to_third >= LATER_FILES / 3);
    pthread_mutex_unlock(&seen.lock);
    pthread_mutex_destroy(&seen.lock);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
