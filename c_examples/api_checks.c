/*
 * api_checks.c -- C-level checks of the pyme_streaming C API: every NULL
 * argument, bad names, put after finalize, out-of-range distribution, filter
 * errors, every status text, the last-error messages, put_nocopy releases.
 *
 * Usage: api_checks HOST:PORT DEAD_HOST:PORT
 *   HOST:PORT       a running PYME data server (files go under api_checks/<pid>/)
 *   DEAD_HOST:PORT  an address where nothing listens
 * Prints every failed check and a final line "N passed, M failed"; exits
 * non-zero when any check failed.
 */
#include <pyme_streaming.h>

#include <pthread.h>
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

/* Outcomes seen by the completion callback (library threads: guarded). */
typedef struct {
    pthread_mutex_t lock;
    int calls;
    int ok;
    int last_status;
    int last_http_status;
    int filter_failures;
    int http_failures;
    PymeStreamer *streamer;    /* set once the streamer exists, to read messages */
    char filter_message[256]; /* streamer_last_error inside the callback of the refused file */
} Outcomes;

static void on_complete(void *user_data, const char *name, size_t server_index, int32_t status,
                        int32_t http_status, uint64_t bytes) {
    Outcomes *outcomes = (Outcomes *)user_data;
    (void)name;
    (void)server_index;
    (void)bytes;
    pthread_mutex_lock(&outcomes->lock);
    outcomes->calls++;
    if (status == STREAMER_OK) outcomes->ok++;
    if (status == STREAMER_ERR_FILTER) {
        outcomes->filter_failures++;
        streamer_last_error(outcomes->streamer, outcomes->filter_message, sizeof outcomes->filter_message, NULL);
    }
    if (status == STREAMER_ERR_HTTP) outcomes->http_failures++;
    outcomes->last_status = status;
    outcomes->last_http_status = http_status;
    pthread_mutex_unlock(&outcomes->lock);
}

static int server_down_reports = 0;
static void on_server_state(void *user_data, size_t server_index, int32_t state) {
    (void)user_data;
    if (server_index == 0 && state == STREAMER_SERVER_DOWN) server_down_reports++;
}

static size_t out_of_range(void *user_data, size_t n_servers, int64_t index, const char *name) {
    (void)user_data;
    (void)index;
    (void)name;
    return n_servers; /* one past the end */
}

/* Refuses files whose name contains "bad"; appends "!" to the others. */
static int32_t picky_filter(void *user_data, const char *name, const uint8_t *data, size_t len,
                            PymeStreamerBuffer *out) {
    (void)user_data;
    if (strstr(name, "bad") != NULL) return 7;
    if (streamer_buffer_append(out, data, len) != STREAMER_OK) return 1;
    return streamer_buffer_append(out, (const uint8_t *)"!", 1);
}

/* A failed call on another thread, whose message only that thread reads. */
typedef struct {
    PymeStreamer *streamer;
    char message[256];
} OtherThread;

static void *fail_on_other_thread(void *arg) {
    OtherThread *job = (OtherThread *)arg;
    const uint8_t byte = 1;
    if (streamer_put(job->streamer, NULL, &byte, 1, 0) == STREAMER_ERR_NULL_ARGUMENT) {
        streamer_last_error(job->streamer, job->message, sizeof job->message, NULL);
    }
    return NULL;
}

static int releases = 0;
static void count_release(void *user_data, const uint8_t *data, size_t len) {
    (void)data;
    (void)len;
    __sync_fetch_and_add((int *)user_data, 1);
}

static void check_status_texts(void) {
    int32_t code;
    PymeStreamerStatus typed = STREAMER_ERR_CLOSE_DETACHED; /* the enum is a LabVIEW ring */
    for (code = typed; code <= STREAMER_OK; code++) {
        const char *text = streamer_status_str(code);
        CHECK(text != NULL && text[0] != '\0' && strcmp(text, "unknown status") != 0);
    }
    CHECK(strcmp(streamer_status_str(1), "unknown status") == 0);
    CHECK(strcmp(streamer_status_str(-1000), "unknown status") == 0);
    CHECK(strcmp(streamer_version(), PYME_STREAMING_VERSION) == 0);
}

static void check_options(const Address *dead) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = (PymeStreamer *)&options; /* must stay untouched on failure */
    char message[256];
    size_t message_len = 0;
    int32_t state = -1;

    CHECK_STATUS(streamer_options_new(NULL), STREAMER_ERR_NULL_ARGUMENT);
    streamer_options_free(NULL);
    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK(options != NULL);

    CHECK_STATUS(streamer_options_add_server(NULL, "127.0.0.1", 1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_add_server(options, NULL, 1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_add_server(options, "", 1), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_add_server(options, "127.0.0.1", 0), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_add_server(options, "\xff\xfe", 1), STREAMER_ERR_UTF8);
    CHECK_STATUS(streamer_options_set_distribution(NULL, out_of_range, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_distribution(options, NULL, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_distribution_kind(NULL, STREAMER_DISTRIBUTION_HASH), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_distribution_kind(options, 99), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_distribution_kind(options, STREAMER_DISTRIBUTION_RANDOM), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_fixed_server(NULL, 0), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter(NULL, picky_filter, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter(options, NULL, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_kind(NULL, STREAMER_FILTER_IDENTITY), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_kind(options, 42), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_kind(options, STREAMER_FILTER_IDENTITY), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_completion(NULL, on_complete, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_completion(options, NULL, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_queue_limits(NULL, 1, 1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_queue_limits(options, 0, 1), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_queue_limits(options, 1, 0), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_queue_limits(options, 16, 1 << 20), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_timeouts(NULL, 1, 1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_timeouts(options, 0, 1000), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_timeouts(options, 1000, 0), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_timeouts(options, 2000, 10000), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_put_timeout(NULL, -1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_put_timeout(options, -1), STREAMER_OK);
    CHECK_STATUS(streamer_options_last_error(NULL, message, sizeof message, &message_len), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_last_error(options, message, sizeof message, NULL), STREAMER_OK);
    CHECK_STATUS(streamer_options_last_error(options, message, sizeof message, &message_len), STREAMER_OK);
    CHECK(strstr(message, "timeouts must be greater than 0") != NULL && message_len == strlen(message));

    /* streamer_new: NULLs, no servers, a dead server; *out untouched on failure. */
    CHECK_STATUS(streamer_new(NULL, &streamer), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_new(options, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_ERR_NO_SERVERS);
    CHECK(streamer == (PymeStreamer *)&options);
    CHECK_STATUS(streamer_options_add_server(options, dead->host, dead->port), STREAMER_OK);
    /* Asked to: every server must be reachable at start. */
    CHECK_STATUS(streamer_options_set_require_all_servers(NULL, 1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_require_all_servers(options, 1), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_ERR_CONNECT);
    CHECK(streamer == (PymeStreamer *)&options);
    CHECK_STATUS(streamer_options_last_error(options, message, sizeof message, &message_len), STREAMER_OK);
    CHECK(strstr(message, "cannot connect") != NULL);
    /* By default a dead server starts down: puts fail at once (no spill
       folder), and the state callback hears of it. */
    CHECK_STATUS(streamer_options_set_require_all_servers(options, 0), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_server_callback(NULL, on_server_state, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_server_callback(options, on_server_state, NULL), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    CHECK_STATUS(streamer_server_state(NULL, 0, &state), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_server_state(streamer, 0, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_server_state(streamer, 1, &state), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_server_state(streamer, 0, &state), STREAMER_OK);
    CHECK(state == STREAMER_SERVER_DOWN);
    CHECK_STATUS(streamer_put(streamer, "api_checks/down", (const uint8_t *)"x", 1, 0), STREAMER_ERR_SERVER_DOWN);
    CHECK_STATUS(streamer_close(streamer), STREAMER_OK);
    /* Every state callback has returned when close returns. */
    CHECK(server_down_reports >= 1);
    streamer = (PymeStreamer *)&options;
    streamer_options_free(options);

    /* Reliability and discovery settings. Discovery here reads only a registry
       file that does not exist: no multicast leaves this test. */
    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_failover(NULL, 0), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_failover(options, 0), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_max_retries(NULL, 1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_max_retries(options, 5), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_sender_poll_us(NULL, 500), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_sender_poll_us(options, 0), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_sender_poll_us(options, 500), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_spill_dir(NULL, "/tmp/x"), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_spill_dir(options, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_spill_dir(options, ""), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_discovery_timeout_ms(options, 100), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_discovery_sources(options, 0, NULL), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_discovery_default_registry(options, 0), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_serverfilter(NULL, "x"), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_serverfilter(options, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_serverfilter(options, "no-such-cluster"), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_discovery_timeout_ms(NULL, 100), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_discovery_timeout_ms(options, 100), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_discovery_default_registry(NULL, 0), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_discovery_default_registry(options, 0), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_discovery_sources(options, 0, "/nonexistent/_pyme-http.sqlite"), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_ERR_DISCOVERY);
    CHECK_STATUS(streamer_options_last_error(options, message, sizeof message, &message_len), STREAMER_OK);
    CHECK(strstr(message, "no-such-cluster") != NULL);
    CHECK_STATUS(n_cluster_servers("x", NULL), STREAMER_ERR_NULL_ARGUMENT);

    /* Built-in filters: bad parameters are refused at configuration. */
    CHECK_STATUS(streamer_options_set_filter_pzf(NULL, STREAMER_PZF_UINT16, 4, 4, 1, STREAMER_PZF_HUFFMAN,
                                                 STREAMER_PZF_QUANT_NONE, 0.0f, 1.0f), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_pzf(options, 9, 4, 4, 1, STREAMER_PZF_HUFFMAN,
                                                 STREAMER_PZF_QUANT_NONE, 0.0f, 1.0f), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_pzf(options, STREAMER_PZF_UINT16, 0, 4, 1, STREAMER_PZF_HUFFMAN,
                                                 STREAMER_PZF_QUANT_NONE, 0.0f, 1.0f), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_pzf(options, STREAMER_PZF_FLOAT32, 4, 4, 1, STREAMER_PZF_HUFFMAN,
                                                 STREAMER_PZF_QUANT_SQRT, 0.0f, 1.0f), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_pzf(options, STREAMER_PZF_UINT16, 4, 4, 1, STREAMER_PZF_HUFFMAN,
                                                 STREAMER_PZF_QUANT_SQRT, 100.0f, 0.0f), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_pzf(options, STREAMER_PZF_UINT16, 4, 4, 1, STREAMER_PZF_HUFFMAN,
                                                 STREAMER_PZF_QUANT_SQRT, 100.0f, 1.0f), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_filter_gzip(NULL, 1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_gzip(options, 0), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_gzip(options, 10), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_options_set_filter_gzip(options, 6), STREAMER_OK);
    streamer_options_free(options);
}

static void check_streamer(const Address *live) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats stats;
    Outcomes outcomes;
    char name[128];
    char message[256];
    char small[8];
    size_t message_len = 0;
    const uint8_t frame[] = {1, 2, 3, 4, 5, 6, 7, 8};
    int pid = (int)getpid();

    memset(&outcomes, 0, sizeof outcomes);
    pthread_mutex_init(&outcomes.lock, NULL);
    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(streamer_options_add_server(options, live->host, live->port), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_completion(options, on_complete, &outcomes), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_filter(options, picky_filter, NULL), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    pthread_mutex_lock(&outcomes.lock);
    outcomes.streamer = streamer;
    pthread_mutex_unlock(&outcomes.lock);
    streamer_options_free(options); /* the streamer copied what it needs */
    CHECK(streamer_n_servers(streamer) == 1);
    CHECK(streamer_n_servers(NULL) == 0);

    /* NULL arguments. */
    snprintf(name, sizeof name, "api_checks/%d/good0", pid);
    CHECK_STATUS(streamer_put(NULL, name, frame, sizeof frame, 0), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_put(streamer, NULL, frame, sizeof frame, 0), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_put(streamer, name, NULL, 5, 0), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_put_stream(NULL, 0, name, frame, sizeof frame), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_put_stream(streamer, 0, NULL, frame, sizeof frame), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_flush(NULL, 0), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_stats(NULL, &stats, sizeof stats), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_stats(streamer, NULL, sizeof stats), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_last_error(NULL, message, sizeof message, &message_len), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_last_error(streamer, NULL, 10, &message_len), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_last_error(streamer, message, sizeof message, NULL), STREAMER_OK);
    CHECK_STATUS(streamer_stats(streamer, &stats, 4), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_stats(streamer, &stats, sizeof stats), STREAMER_OK);
    CHECK(stats.size == sizeof stats);
    CHECK_STATUS(streamer_buffer_append(NULL, frame, 1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_buffer_reserve(NULL, 1), STREAMER_ERR_NULL_ARGUMENT);
    CHECK(streamer_buffer_len(NULL) == 0);

    /* Bad names: nothing queued. */
    CHECK_STATUS(streamer_put(streamer, "", frame, sizeof frame, 0), STREAMER_ERR_INVALID_NAME);
    CHECK_STATUS(streamer_put(streamer, "/absolute", frame, sizeof frame, 0), STREAMER_ERR_INVALID_NAME);
    CHECK_STATUS(streamer_put(streamer, "a/../b", frame, sizeof frame, 0), STREAMER_ERR_INVALID_NAME);
    CHECK_STATUS(streamer_put(streamer, "with space", frame, sizeof frame, 0), STREAMER_ERR_INVALID_NAME);
    CHECK_STATUS(streamer_put(streamer, "line\r\nbreak", frame, sizeof frame, 0), STREAMER_ERR_INVALID_NAME);
    CHECK_STATUS(streamer_put(streamer, "bad\xff", frame, sizeof frame, 0), STREAMER_ERR_UTF8);
    CHECK_STATUS(streamer_put_stream(streamer, 0, "a b", frame, sizeof frame), STREAMER_ERR_INVALID_NAME);
    CHECK_STATUS(streamer_last_error(streamer, message, sizeof message, &message_len), STREAMER_OK);
    CHECK(strstr(message, "invalid file name") != NULL);
    /* Truncation: NUL-terminated, full length reported; length-only query. */
    CHECK_STATUS(streamer_last_error(streamer, small, sizeof small, &message_len), STREAMER_OK);
    CHECK(strlen(small) == sizeof small - 1 && message_len > sizeof small);
    CHECK_STATUS(streamer_last_error(streamer, NULL, 0, &message_len), STREAMER_OK);
    CHECK(message_len == strlen(message));
    /* Messages are per thread: another thread's failure does not replace this one's. */
    {
        pthread_t other;
        OtherThread job;
        job.streamer = streamer;
        job.message[0] = '\0';
        CHECK(pthread_create(&other, NULL, fail_on_other_thread, &job) == 0);
        CHECK(pthread_join(other, NULL) == 0);
        CHECK(strstr(job.message, "a string argument is NULL") != NULL);
        CHECK_STATUS(streamer_last_error(streamer, message, sizeof message, &message_len), STREAMER_OK);
        CHECK(strstr(message, "invalid file name") != NULL);
    }

    /* Prepared buffers: none for small files, NULL out allowed. */
    message_len = 99;
    CHECK_STATUS(streamer_prepare_buffers(NULL, 1 << 20, 1, &message_len), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_prepare_buffers(streamer, 1 << 20, 2, &message_len), STREAMER_OK);
    CHECK(message_len == 2);
    CHECK_STATUS(streamer_prepare_buffers(streamer, 1000, 2, &message_len), STREAMER_OK);
    CHECK(message_len == 0);
    CHECK_STATUS(streamer_prepare_buffers(streamer, 1 << 20, 1, NULL), STREAMER_OK);

    /* No such stream. */
    CHECK_STATUS(streamer_put_stream(streamer, 1, name, frame, sizeof frame), STREAMER_ERR_NO_SUCH_STREAM);

    /* Good files, a file the filter refuses, an empty file with NULL data. */
    CHECK_STATUS(streamer_put(streamer, name, frame, sizeof frame, 0), STREAMER_OK);
    snprintf(name, sizeof name, "api_checks/%d/good1", pid);
    CHECK_STATUS(streamer_put_stream(streamer, 0, name, frame, sizeof frame), STREAMER_OK);
    snprintf(name, sizeof name, "api_checks/%d/empty", pid);
    CHECK_STATUS(streamer_put(streamer, name, NULL, 0, -1), STREAMER_OK);
    snprintf(name, sizeof name, "api_checks/%d/bad", pid);
    CHECK_STATUS(streamer_put(streamer, name, frame, sizeof frame, 3), STREAMER_OK);
    CHECK_STATUS(streamer_flush(streamer, STREAMER_WAIT_FOREVER), STREAMER_OK);
    pthread_mutex_lock(&outcomes.lock);
    CHECK(outcomes.calls == 4 && outcomes.ok == 3 && outcomes.filter_failures == 1);
    CHECK(strstr(outcomes.filter_message, "filter") != NULL); /* read inside the callback */
    pthread_mutex_unlock(&outcomes.lock);

    /* Write-once: the same name again is refused by the server (405). */
    snprintf(name, sizeof name, "api_checks/%d/good0", pid);
    CHECK_STATUS(streamer_put(streamer, name, frame, sizeof frame, 0), STREAMER_OK);
    CHECK_STATUS(streamer_flush(streamer, 10000), STREAMER_OK);
    pthread_mutex_lock(&outcomes.lock);
    CHECK(outcomes.http_failures == 1 && outcomes.last_status == STREAMER_ERR_HTTP && outcomes.last_http_status == 405);
    pthread_mutex_unlock(&outcomes.lock);

    /* put_nocopy: release exactly once, on failure at once, on success by close. */
    releases = 0;
    CHECK_STATUS(streamer_put_nocopy(NULL, "x", frame, sizeof frame, 0, count_release, &releases), STREAMER_ERR_NULL_ARGUMENT);
    CHECK(releases == 1);
    CHECK_STATUS(streamer_put_nocopy(streamer, "a b", frame, sizeof frame, 0, count_release, &releases), STREAMER_ERR_INVALID_NAME);
    CHECK(releases == 2);
    CHECK_STATUS(streamer_put_nocopy(streamer, NULL, frame, sizeof frame, 0, count_release, &releases), STREAMER_ERR_NULL_ARGUMENT);
    CHECK(releases == 3);
    snprintf(name, sizeof name, "api_checks/%d/nocopy", pid);
    CHECK_STATUS(streamer_put_nocopy(streamer, name, frame, sizeof frame, 1, count_release, &releases), STREAMER_OK);
    snprintf(name, sizeof name, "api_checks/%d/nocopy_static", pid);
    CHECK_STATUS(streamer_put_nocopy(streamer, name, frame, sizeof frame, 1, NULL, NULL), STREAMER_OK);

    CHECK_STATUS(streamer_stats(streamer, &stats, sizeof stats), STREAMER_OK);
    CHECK(stats.files_queued == 7);
    /* One filter failure and one 405: close reports files failed. */
    CHECK_STATUS(streamer_close_stats(streamer, NULL, sizeof stats), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(streamer_close_stats(streamer, &stats, 0), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(streamer_close_stats(streamer, &stats, sizeof stats), STREAMER_ERR_FILES_FAILED);
    CHECK(releases == 4);
    CHECK(stats.files_queued == 7 && stats.files_acknowledged == 5 && stats.files_failed == 2);
    CHECK(stats.queue_files == 0 && stats.in_flight_files == 0);
    CHECK_STATUS(streamer_close(NULL), STREAMER_OK);
    CHECK_STATUS(streamer_close_stats(NULL, &stats, sizeof stats), STREAMER_OK);
    pthread_mutex_destroy(&outcomes.lock);
}

static void check_distribution(const Address *live) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    const uint8_t frame[] = {9};

    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(streamer_options_add_server(options, live->host, live->port), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_distribution(options, out_of_range, NULL), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    CHECK_STATUS(streamer_put(streamer, "api_checks/never", frame, sizeof frame, 0), STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE);
    CHECK_STATUS(streamer_close(streamer), STREAMER_OK); /* nothing was queued */

    CHECK_STATUS(streamer_options_set_fixed_server(options, 5), STREAMER_OK);
    CHECK_STATUS(streamer_new(options, &streamer), STREAMER_OK);
    CHECK_STATUS(streamer_put(streamer, "api_checks/never", frame, sizeof frame, 0), STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE);
    CHECK_STATUS(streamer_close(streamer), STREAMER_OK);
    streamer_options_free(options);

    CHECK(distribution_function_round_robin(3, 4) == 1);
    CHECK(distribution_function_round_robin(3, -1) < 3);
    CHECK(distribution_function_round_robin(0, 4) == 0);
}

static void check_stream(const Address *live, const Address *dead) {
    PymeStreamerOptions *options = NULL;
    PymeStream *stream = NULL;
    PymeStreamerStats stats;
    char name[128];
    char message[256];
    size_t message_len = 0;
    const uint8_t frame[] = {1, 2, 3};
    int pid = (int)getpid();
    int32_t state = -1;

    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(stream_new(NULL, live->port, options, &stream), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_new(live->host, live->port, NULL, &stream), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_new(live->host, live->port, options, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_new(live->host, 0, options, &stream), STREAMER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(stream_new(dead->host, dead->port, options, &stream), STREAMER_ERR_CONNECT);
    CHECK(stream == NULL);
    CHECK_STATUS(stream_new(live->host, live->port, options, &stream), STREAMER_OK);
    streamer_options_free(options);
    CHECK_STATUS(stream_server_state(NULL, &state), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_server_state(stream, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_server_state(stream, &state), STREAMER_OK);
    CHECK(state == STREAMER_SERVER_UP);

    snprintf(name, sizeof name, "api_checks/%d/stream0", pid);
    CHECK_STATUS(stream_put(NULL, name, frame, sizeof frame), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_put(stream, NULL, frame, sizeof frame), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_put(stream, "..", frame, sizeof frame), STREAMER_ERR_INVALID_NAME);
    CHECK_STATUS(stream_put(stream, name, frame, sizeof frame), STREAMER_OK);
    CHECK_STATUS(stream_stats(NULL, &stats, sizeof stats), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_stats(stream, NULL, sizeof stats), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_last_error(NULL, message, sizeof message, &message_len), STREAMER_ERR_NULL_ARGUMENT);

    /* A bad sentinel name leaves the stream open. */
    CHECK_STATUS(stream_finalize(NULL, "end"), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_finalize(stream, NULL), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_finalize(stream, "bad name"), STREAMER_ERR_INVALID_NAME);
    snprintf(name, sizeof name, "api_checks/%d/stream1", pid);
    CHECK_STATUS(stream_put(stream, name, frame, sizeof frame), STREAMER_OK);

    snprintf(name, sizeof name, "api_checks/%d/end_of_stream", pid);
    CHECK_STATUS(stream_finalize(stream, name), STREAMER_OK);
    /* After finalize: the handle is valid, puts are refused, stats are final. */
    CHECK_STATUS(stream_put(stream, "api_checks/late", frame, sizeof frame), STREAMER_ERR_CLOSED);
    CHECK_STATUS(stream_finalize(stream, name), STREAMER_ERR_CLOSED);
    CHECK_STATUS(stream_last_error(stream, message, sizeof message, &message_len), STREAMER_OK);
    CHECK(strstr(message, "finalized") != NULL);
    CHECK_STATUS(stream_stats(stream, &stats, sizeof stats), STREAMER_OK);
    CHECK(stats.files_queued == 3 && stats.files_acknowledged == 3 && stats.files_failed == 0);
    CHECK_STATUS(stream_close(stream), STREAMER_OK);
    CHECK_STATUS(stream_close(NULL), STREAMER_OK);
    CHECK_STATUS(stream_close_stats(NULL, NULL, sizeof stats), STREAMER_ERR_NULL_ARGUMENT);
    CHECK_STATUS(stream_close_stats(NULL, &stats, sizeof stats), STREAMER_OK);
}

int main(int argc, char **argv) {
    Address live;
    Address dead;
    if (argc != 3 || !parse_address(argv[1], &live) || !parse_address(argv[2], &dead)) {
        fprintf(stderr, "usage: %s HOST:PORT DEAD_HOST:PORT\n", argv[0]);
        return 2;
    }
    check_status_texts();
    check_options(&dead);
    check_streamer(&live);
    check_distribution(&live);
    check_stream(&live, &dead);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
