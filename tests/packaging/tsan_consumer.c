/*
 * A consumer as ThreadSanitizer sees it: everything it hands to the library and
 * gets back through it (completion and release callbacks on the library's threads,
 * counters read after flush and close, a buffer reused after its release) is
 * synchronized inside the library, which TSan does not instrument. Built with
 * -fsanitize=thread by tests/c_api.rs and run against a data server:
 *
 *   tsan_consumer <host> <port> clean   no race of its own: clean with the
 *                                       suppressions of share/pyme_streaming/tsan.supp
 *   tsan_consumer <host> <port> race    also two races of its own, which TSan must
 *                                       still report with the suppressions: two of its
 *                                       threads increment one counter without a lock,
 *                                       and the completion callback writes a counter the
 *                                       main thread reads while files still complete
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pyme_streaming.h>

#define N_FILES 64
#define FILE_BYTES 4096
#define N_BUFFERS 4

static uint8_t buffers[N_BUFFERS][FILE_BYTES];
static int buffer_busy[N_BUFFERS];
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_free = PTHREAD_COND_INITIALIZER;

static long racy_in_callback;
static int race_mode;

struct totals {
    long completed;
    long acknowledged;
    uint64_t bytes;
};

static void on_complete(void *user_data, const char *name, size_t server_index, int32_t status,
                        int32_t http_status, uint64_t bytes) {
    struct totals *totals = (struct totals *)user_data;
    (void)name; (void)server_index; (void)http_status;
    /* Unlocked: completions for one server do not overlap, and the main thread
     * reads these only after streamer_close, which joins the library's threads. */
    totals->completed++;
    if (status == STREAMER_OK) totals->acknowledged++;
    totals->bytes += bytes;
    /* The race of the program's own: written here, read by the main thread while
     * files are still completing, with no synchronization at all. */
    if (race_mode) racy_in_callback++;
}

static void release(void *user_data, const uint8_t *data, size_t len) {
    int index = (int)(intptr_t)user_data;
    (void)data; (void)len;
    pthread_mutex_lock(&pool_lock);
    buffer_busy[index] = 0;
    pthread_cond_signal(&pool_free);
    pthread_mutex_unlock(&pool_lock);
}

static int take_buffer(void) {
    int i;
    pthread_mutex_lock(&pool_lock);
    for (;;) {
        for (i = 0; i < N_BUFFERS; i++) {
            if (!buffer_busy[i]) {
                buffer_busy[i] = 1;
                pthread_mutex_unlock(&pool_lock);
                return i;
            }
        }
        pthread_cond_wait(&pool_free, &pool_lock);
    }
}

static long racy_counter;

static void *race(void *unused) {
    int i;
    (void)unused;
    for (i = 0; i < 100000; i++) racy_counter++;
    return NULL;
}

int main(int argc, char **argv) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats stats;
    struct totals totals;
    int i;
    int32_t status;
    if (argc != 4) {
        fprintf(stderr, "usage: tsan_consumer <host> <port> clean|race\n");
        return 2;
    }
    memset(&totals, 0, sizeof totals);
    race_mode = strcmp(argv[3], "race") == 0;
    if (race_mode) {
        pthread_t a, b;
        pthread_create(&a, NULL, race, NULL);
        pthread_create(&b, NULL, race, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    }
    if (streamer_options_new(&options) != STREAMER_OK ||
        streamer_options_add_server(options, argv[1], (uint16_t)atoi(argv[2])) != STREAMER_OK ||
        streamer_options_set_completion(options, on_complete, &totals) != STREAMER_OK ||
        streamer_new(options, &streamer) != STREAMER_OK) {
        fprintf(stderr, "cannot open a streamer\n");
        return 2;
    }
    streamer_options_free(options);
    for (i = 0; i < N_FILES; i++) {
        char name[64];
        int index = take_buffer();
        /* Written here, read by the library's sender thread, then reused after release. */
        memset(buffers[index], i, FILE_BYTES);
        sprintf(name, "tsan/file%03d.bin", i);
        if (i % 2 == 0) {
            status = streamer_put_nocopy(streamer, name, buffers[index], FILE_BYTES, i, release,
                                         (void *)(intptr_t)index);
        } else {
            status = streamer_put(streamer, name, buffers[index], FILE_BYTES, i);
            release((void *)(intptr_t)index, buffers[index], FILE_BYTES);
        }
        if (status != STREAMER_OK) {
            fprintf(stderr, "put %d: %s\n", i, streamer_status_str(status));
            return 2;
        }
    }
    if (race_mode) printf("read while completing: %ld\n", racy_in_callback);
    if (streamer_flush(streamer, STREAMER_WAIT_FOREVER) != STREAMER_OK) return 2;
    status = streamer_close_stats(streamer, &stats, sizeof stats);
    printf("status %d completed %ld acknowledged %ld bytes %lu\n", (int)status, totals.completed,
           totals.acknowledged, (unsigned long)totals.bytes);
    return status == STREAMER_OK && totals.acknowledged == N_FILES ? 0 : 1;
}
