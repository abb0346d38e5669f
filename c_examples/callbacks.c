/*
 * callbacks.c -- C-level checks of what callbacks may call (re-entrancy: the
 * completion, distribution, filter, release and server state callbacks) and
 * of the bounded close (streamer_close_timeout / stream_close_timeout).
 *
 * Usage: callbacks HOST:PORT STALLED_HOST:PORT [SLACK_MS]
 *   HOST:PORT          a running PYME data server (files go under callbacks/<pid>/)
 *   STALLED_HOST:PORT  a server that reads requests and never answers
 *   SLACK_MS           how late a bounded close may return beyond its promise
 *                      (limit + 500 ms) on a slow machine (default 1500)
 * Prints every failed check and a final line "N passed, M failed"; exits
 * non-zero when any check failed.
 */
#include <pyme_streaming.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int passed = 0;
static int failed = 0;
static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;

#define CHECK(cond)                                                          \
    do {                                                                     \
        int ok_ = (cond);                                                    \
        pthread_mutex_lock(&counts_lock);                                    \
        if (ok_) {                                                           \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                    \
        pthread_mutex_unlock(&counts_lock);                                  \
    } while (0)

#define CHECK_STATUS(expr, expected)                                                            \
    do {                                                                                        \
        int32_t got_ = (expr);                                                                  \
        CHECK(got_ == (expected));                                                              \
        if (got_ != (expected))                                                                 \
            fprintf(stderr, "  %s returned %d (%s), expected %s\n", #expr, (int)got_,           \
                    streamer_status_str(got_), #expected);                                      \
    } while (0)

typedef struct {
    char host[256];
    uint16_t port;
} Address;

static int parse_address(const char *text, Address *out) {
    const char *colon = strrchr(text, ':');
    size_t host_len;
    long port;
    if (colon == NULL) return 0;
    host_len = (size_t)(colon - text);
    if (host_len == 0 || host_len >= sizeof out->host) return 0;
    memcpy(out->host, text, host_len);
    out->host[host_len] = '\0';
    port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535) return 0;
    out->port = (uint16_t)port;
    return 1;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

static long slack_ms = 1500;

/* ---- A stream finalized while its completion callback reads its stats. ---- */

typedef struct {
    PymeStream *stream;
    int calls;
    int stats_ok;
    int refusals_ok;
} StreamCalls;

static void stream_callback(void *user_data, const char *name, size_t server_index, int32_t status,
                            int32_t http_status, uint64_t bytes) {
    StreamCalls *calls = (StreamCalls *)user_data;
    PymeStreamerStats stats;
    char message[128];
    (void)name;
    (void)server_index;
    (void)status;
    (void)http_status;
    (void)bytes;
    calls->calls++; /* calls for one server do not overlap */
    if (stream_stats(calls->stream, &stats, sizeof stats) == STREAMER_OK && stats.files_queued > 0 &&
        stats.files_acknowledged + stats.files_failed <= stats.files_queued)
        calls->stats_ok++;
    if (stream_flush(calls->stream, 1000) == STREAMER_ERR_IN_CALLBACK &&
        stream_finalize(calls->stream, "never") == STREAMER_ERR_IN_CALLBACK &&
        stream_close(calls->stream) == STREAMER_ERR_IN_CALLBACK &&
        stream_close_stats(calls->stream, &stats, sizeof stats) == STREAMER_ERR_IN_CALLBACK &&
        stream_close_timeout(calls->stream, 10, NULL, 0) == STREAMER_ERR_IN_CALLBACK &&
        stream_last_error(calls->stream, message, sizeof message, NULL) == STREAMER_OK &&
        strstr(message, "callback") != NULL)
        calls->refusals_ok++;
}

static void check_stream_finalize_with_stats_in_callback(const Address *live) {
    PymeStreamerOptions *options = NULL;
    StreamCalls calls;
    PymeStreamerStats stats;
    char name[128];
    const uint8_t data[] = {1, 2, 3};
    int i;

    memset(&calls, 0, sizeof calls);
    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_completion(options, stream_callback, &calls), STREAMER_OK);
    CHECK_STATUS(stream_new(live->host, live->port, options, &calls.stream), STREAMER_OK);
    streamer_options_free(options);
    for (i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "callbacks/%d/stream%02d", (int)getpid(), i);
        CHECK_STATUS(stream_put(calls.stream, name, data, sizeof data), STREAMER_OK);
    }
    snprintf(name, sizeof name, "callbacks/%d/end_of_stream", (int)getpid());
    /* Deadlocked before: finalize held the handle's lock while the callbacks waited for it. */
    CHECK_STATUS(stream_finalize(calls.stream, name), STREAMER_OK);
    CHECK(calls.calls == 21);
    CHECK(calls.stats_ok == 21);
    CHECK(calls.refusals_ok == 21);
    CHECK_STATUS(stream_stats(calls.stream, &stats, sizeof stats), STREAMER_OK);
    CHECK(stats.files_acknowledged == 21);
    CHECK_STATUS(stream_close(calls.stream), STREAMER_OK);
}

/* ---- Every callback of a streamer calling back into it. ---- */

typedef struct {
    pthread_mutex_t lock;
    PymeStreamer *streamer;
    int completion_checks;
    int puts_ok;
    int puts_refused_full;
    int release_checks;
    int distribution_checks;
    int filter_checks;
} StreamerCalls;

static StreamerCalls streamer_calls;

static int refuses_waiting(PymeStreamer *streamer) {
    PymeStreamerStats stats;
    return streamer_flush(streamer, STREAMER_WAIT_FOREVER) == STREAMER_ERR_IN_CALLBACK &&
           streamer_close(streamer) == STREAMER_ERR_IN_CALLBACK &&
           streamer_close_stats(streamer, &stats, sizeof stats) == STREAMER_ERR_IN_CALLBACK &&
           streamer_close_timeout(streamer, 10, &stats, sizeof stats) == STREAMER_ERR_IN_CALLBACK &&
           streamer_stats(streamer, &stats, sizeof stats) == STREAMER_OK && streamer_n_servers(streamer) == 1;
}

static int ends_with(const char *text, const char *end) {
    size_t text_len = strlen(text), end_len = strlen(end);
    return text_len >= end_len && strcmp(text + text_len - end_len, end) == 0;
}

static void streamer_callback(void *user_data, const char *name, size_t server_index, int32_t status,
                              int32_t http_status, uint64_t bytes) {
    StreamerCalls *calls = (StreamerCalls *)user_data;
    PymeStreamer *streamer;
    (void)server_index;
    (void)http_status;
    (void)bytes;
    pthread_mutex_lock(&calls->lock);
    streamer = calls->streamer;
    pthread_mutex_unlock(&calls->lock);
    if (streamer == NULL || status != STREAMER_OK) return;
    if (refuses_waiting(streamer)) {
        pthread_mutex_lock(&calls->lock);
        calls->completion_checks++;
        pthread_mutex_unlock(&calls->lock);
    }
    if (ends_with(name, "/trigger")) {
        /* The queue holds one file: the first put fits, the second would wait
           for room that only this thread can make: refused at once. */
        char again[160];
        int32_t first, second;
        snprintf(again, sizeof again, "%s_again", name);
        first = streamer_put(streamer, again, (const uint8_t *)"x", 1, -1);
        snprintf(again, sizeof again, "%s_full", name);
        second = streamer_put(streamer, again, (const uint8_t *)"y", 1, -1);
        pthread_mutex_lock(&calls->lock);
        if (first == STREAMER_OK) calls->puts_ok++;
        if (second == STREAMER_ERR_QUEUE_FULL) calls->puts_refused_full++;
        pthread_mutex_unlock(&calls->lock);
    }
}

static void release_callback(void *user_data, const uint8_t *data, size_t len) {
    StreamerCalls *calls = (StreamerCalls *)user_data;
    PymeStreamer *streamer;
    (void)data;
    (void)len;
    pthread_mutex_lock(&calls->lock);
    streamer = calls->streamer;
    pthread_mutex_unlock(&calls->lock);
    if (streamer != NULL && refuses_waiting(streamer)) {
        pthread_mutex_lock(&calls->lock);
        calls->release_checks++;
        pthread_mutex_unlock(&calls->lock);
    }
}

static size_t distribution_callback(void *user_data, size_t n_servers, int64_t index, const char *name) {
    StreamerCalls *calls = (StreamerCalls *)user_data;
    PymeStreamer *streamer;
    (void)index;
    (void)name;
    pthread_mutex_lock(&calls->lock);
    streamer = calls->streamer;
    pthread_mutex_unlock(&calls->lock);
    if (streamer != NULL && refuses_waiting(streamer)) {
        pthread_mutex_lock(&calls->lock);
        calls->distribution_checks++;
        pthread_mutex_unlock(&calls->lock);
    }
    return n_servers - 1;
}

static int32_t filter_callback(void *user_data, const char *name, const uint8_t *data, size_t len,
                               PymeStreamerBuffer *out) {
    StreamerCalls *calls = (StreamerCalls *)user_data;
    PymeStreamer *streamer;
    (void)name;
    pthread_mutex_lock(&calls->lock);
    streamer = calls->streamer;
    pthread_mutex_unlock(&calls->lock);
    if (streamer != NULL && refuses_waiting(streamer)) {
        pthread_mutex_lock(&calls->lock);
        calls->filter_checks++;
        pthread_mutex_unlock(&calls->lock);
    }
    return streamer_buffer_append(out, data, len);
}

static void check_streamer_callbacks(const Address *live) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats stats;
    static const uint8_t lent[] = {7, 7, 7};
    char name[128];
    int i;

    memset(&streamer_calls, 0, sizeof streamer_calls);
    pthread_mutex_init(&streamer_calls.lock, NULL);
    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(streamer_options_add_server(options, live->host, live->port), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_queue_limits(options, 1, 1 << 20), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_completion(options, streamer_callback, &streamer_calls), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_distribution(options, distribution_callback, &streamer_calls), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_filter(options, filter_callback, &streamer_calls), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    streamer_options_free(options);
    pthread_mutex_lock(&streamer_calls.lock);
    streamer_calls.streamer = streamer;
    pthread_mutex_unlock(&streamer_calls.lock);

    snprintf(name, sizeof name, "callbacks/%d/trigger", (int)getpid());
    CHECK_STATUS(streamer_put(streamer, name, (const uint8_t *)"t", 1, 0), STREAMER_OK);
    CHECK_STATUS(streamer_flush(streamer, 30000), STREAMER_OK);
    snprintf(name, sizeof name, "callbacks/%d/lent", (int)getpid());
    CHECK_STATUS(streamer_put_nocopy(streamer, name, lent, sizeof lent, 1, release_callback, &streamer_calls),
                 STREAMER_OK);
    CHECK_STATUS(streamer_flush(streamer, 30000), STREAMER_OK);
    /* A release may come just after the outcome that ended the flush. */
    for (i = 0; i < 10000; i++) {
        int released;
        pthread_mutex_lock(&streamer_calls.lock);
        released = streamer_calls.release_checks;
        pthread_mutex_unlock(&streamer_calls.lock);
        if (released > 0) break;
        {
            struct timespec nap = {0, 1000000};
            nanosleep(&nap, NULL);
        }
    }

    pthread_mutex_lock(&streamer_calls.lock);
    streamer_calls.streamer = NULL; /* close from this thread only */
    CHECK(streamer_calls.puts_ok == 1 && streamer_calls.puts_refused_full == 1);
    /* trigger, trigger_again and lent: three acknowledged files */
    CHECK(streamer_calls.completion_checks == 3);
    CHECK(streamer_calls.release_checks == 1);
    /* trigger, trigger_again and trigger_full (from the callback), lent */
    CHECK(streamer_calls.distribution_checks == 4);
    CHECK(streamer_calls.filter_checks == 3);
    pthread_mutex_unlock(&streamer_calls.lock);
    CHECK_STATUS(streamer_close_stats(streamer, &stats, sizeof stats), STREAMER_OK);
    CHECK(stats.files_queued == 3 && stats.files_acknowledged == 3 && stats.dropped == 1);
    pthread_mutex_destroy(&streamer_calls.lock);
}

/* ---- The server state callback follows the same rules. ---- */

/* A loopback port nothing listens on (bound, then released). */
static uint16_t dead_port(void) {
    struct sockaddr_in address;
    socklen_t len = sizeof address;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port = 0;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&address, sizeof address) == 0 &&
        getsockname(fd, (struct sockaddr *)&address, &len) == 0)
        port = ntohs(address.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    PymeStreamer *streamer;
    int first_call_checked; /* 1: every check passed, -1: one failed */
    int down_reports;
} StateCalls;

static StateCalls state_calls;

static void state_callback(void *user_data, size_t server_index, int32_t state) {
    StateCalls *calls = (StateCalls *)user_data;
    PymeStreamerStats stats;
    int32_t read = -1;
    int ok;
    pthread_mutex_lock(&calls->lock);
    if (server_index == 0 && state == STREAMER_SERVER_DOWN) calls->down_reports++;
    if (calls->first_call_checked != 0) {
        pthread_mutex_unlock(&calls->lock);
        return;
    }
    /* The first call (server 0, down at start) may come before streamer_new
       has returned the handle: wait for it. */
    while (calls->streamer == NULL) pthread_cond_wait(&calls->changed, &calls->lock);
    ok = streamer_flush(calls->streamer, STREAMER_WAIT_FOREVER) == STREAMER_ERR_IN_CALLBACK &&
         streamer_close(calls->streamer) == STREAMER_ERR_IN_CALLBACK &&
         streamer_close_timeout(calls->streamer, 10, &stats, sizeof stats) == STREAMER_ERR_IN_CALLBACK &&
         streamer_stats(calls->streamer, &stats, sizeof stats) == STREAMER_OK &&
         streamer_server_state(calls->streamer, server_index, &read) == STREAMER_OK &&
         read == STREAMER_SERVER_DOWN && streamer_n_servers(calls->streamer) == 2;
    calls->first_call_checked = ok ? 1 : -1;
    pthread_cond_broadcast(&calls->changed);
    pthread_mutex_unlock(&calls->lock);
}

static void check_server_state_callback(const Address *live) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats stats;
    uint16_t dead = dead_port();

    memset(&state_calls, 0, sizeof state_calls);
    pthread_mutex_init(&state_calls.lock, NULL);
    pthread_cond_init(&state_calls.changed, NULL);
    CHECK(dead != 0);
    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(streamer_options_add_server(options, "127.0.0.1", dead), STREAMER_OK);
    CHECK_STATUS(streamer_options_add_server(options, live->host, live->port), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_server_callback(options, state_callback, &state_calls), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    streamer_options_free(options);
    pthread_mutex_lock(&state_calls.lock);
    state_calls.streamer = streamer;
    pthread_cond_broadcast(&state_calls.changed);
    while (state_calls.first_call_checked == 0) pthread_cond_wait(&state_calls.changed, &state_calls.lock);
    CHECK(state_calls.first_call_checked == 1);
    state_calls.streamer = NULL; /* close from this thread only */
    pthread_mutex_unlock(&state_calls.lock);
    CHECK_STATUS(streamer_close_stats(streamer, &stats, sizeof stats), STREAMER_OK);
    CHECK(state_calls.down_reports == 1);
    pthread_cond_destroy(&state_calls.changed);
    pthread_mutex_destroy(&state_calls.lock);
}

/* ---- Bounded close against a server that never answers. ---- */

static int completions_after_limit = 0;
static int lent_released = 0;

static void count_completion(void *user_data, const char *name, size_t server_index, int32_t status,
                             int32_t http_status, uint64_t bytes) {
    (void)user_data;
    (void)name;
    (void)server_index;
    (void)status;
    (void)http_status;
    (void)bytes;
    __sync_fetch_and_add(&completions_after_limit, 1);
}

static void count_release(void *user_data, const uint8_t *data, size_t len) {
    (void)user_data;
    (void)data;
    (void)len;
    __sync_fetch_and_add(&lent_released, 1);
}

static void check_bounded_close(const Address *live, const Address *stalled) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStream *stream = NULL;
    PymeStreamerStats stats;
    static const uint8_t frame[4096] = {0};
    char name[128];
    double started, elapsed;
    int i;

    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(streamer_options_add_server(options, stalled->host, stalled->port), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_timeouts(options, 5000, 60000), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_completion(options, count_completion, NULL), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    for (i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "callbacks/%d/stalled%d", (int)getpid(), i);
        CHECK_STATUS(streamer_put_nocopy(streamer, name, frame, sizeof frame, i, count_release, NULL), STREAMER_OK);
    }
    started = now_ms();
    CHECK_STATUS(streamer_close_timeout(streamer, 300, &stats, sizeof stats), STREAMER_ERR_CLOSE_TIMEOUT);
    elapsed = now_ms() - started;
    CHECK(elapsed >= 300.0);
    CHECK(elapsed < 300.0 + STREAMER_CLOSE_MARGIN_MS + (double)slack_ms);
    CHECK(stats.size == sizeof stats);
    CHECK(stats.files_queued == 4 && stats.files_failed == 4 && stats.files_acknowledged == 0);
    CHECK(__sync_fetch_and_add(&lent_released, 0) == 4);
    CHECK(__sync_fetch_and_add(&completions_after_limit, 0) == 0);

    /* The same for one stream; statistics are optional. */
    CHECK_STATUS(stream_new(stalled->host, stalled->port, options, &stream), STREAMER_OK);
    streamer_options_free(options);
    snprintf(name, sizeof name, "callbacks/%d/stalled_stream", (int)getpid());
    CHECK_STATUS(stream_put(stream, name, frame, sizeof frame), STREAMER_OK);
    started = now_ms();
    CHECK_STATUS(stream_close_timeout(stream, 200, NULL, 0), STREAMER_ERR_CLOSE_TIMEOUT);
    elapsed = now_ms() - started;
    CHECK(elapsed < 200.0 + STREAMER_CLOSE_MARGIN_MS + (double)slack_ms);
    CHECK(__sync_fetch_and_add(&completions_after_limit, 0) == 0);

    /* Within its limit a bounded close is a close; NULL does nothing. */
    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(streamer_options_add_server(options, live->host, live->port), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    streamer_options_free(options);
    snprintf(name, sizeof name, "callbacks/%d/in_time", (int)getpid());
    CHECK_STATUS(streamer_put(streamer, name, frame, 16, -1), STREAMER_OK);
    CHECK_STATUS(streamer_close_timeout(streamer, 30000, &stats, sizeof stats), STREAMER_OK);
    CHECK(stats.files_acknowledged == 1);
    CHECK_STATUS(streamer_close_timeout(NULL, 10, NULL, 0), STREAMER_OK);
    CHECK_STATUS(stream_close_timeout(NULL, 10, &stats, sizeof stats), STREAMER_OK);
    CHECK_STATUS(stream_close_timeout(NULL, 10, &stats, 3), STREAMER_ERR_INVALID_ARGUMENT);
}

int main(int argc, char **argv) {
    Address live;
    Address stalled;
    if ((argc != 3 && argc != 4) || !parse_address(argv[1], &live) || !parse_address(argv[2], &stalled)) {
        fprintf(stderr, "usage: %s HOST:PORT STALLED_HOST:PORT [SLACK_MS]\n", argv[0]);
        return 2;
    }
    if (argc == 4) slack_ms = strtol(argv[3], NULL, 10);
    check_stream_finalize_with_stats_in_callback(&live);
    check_streamer_callbacks(&live);
    check_server_state_callback(&live);
    check_bounded_close(&live, &stalled);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
