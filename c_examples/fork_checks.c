/*
 * fork_checks.c -- fork() with a streamer and a stream open. In the child,
 * every call on an inherited handle that returns a status returns
 * STREAMER_ERR_FORKED at once, and the close functions only free the
 * handle's memory (no wait, no shutdown of the parent's sockets); the child
 * makes a streamer of its own and streams with it. The parent goes on
 * streaming with its handles.
 *
 * Usage: fork_checks HOST:PORT SPILL_DIR
 *   HOST:PORT  a running PYME data server (files go under fork_checks/)
 *   SPILL_DIR  a folder for the spill folder checks: the parent's streamer
 *              holds it, so a second streamer on it, in the parent or in the
 *              child, gets STREAMER_ERR_SPILL_BUSY
 * Prints every failed check and a final line "N passed, M failed"; exits
 * non-zero when any check failed (in the parent or the child).
 */
#include <pyme_streaming.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int passed = 0;
static int failed = 0;

#define CHECK_STATUS(expr, expected)                                          \
    do {                                                                      \
        int32_t got_ = (expr);                                                \
        if (got_ == (expected)) {                                             \
            passed++;                                                         \
        } else {                                                              \
            failed++;                                                         \
            fprintf(stderr, "FAILED %s:%d (pid %ld): %s returned %d (%s), expected %s\n", \
                    __FILE__, __LINE__, (long)getpid(), #expr, (int)got_,       \
                    streamer_status_str(got_), #expected);                     \
        }                                                                     \
    } while (0)

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (cond) {                                                           \
            passed++;                                                         \
        } else {                                                              \
            failed++;                                                         \
            fprintf(stderr, "FAILED %s:%d (pid %ld): %s\n", __FILE__, __LINE__, \
                    (long)getpid(), #cond);                                     \
        }                                                                     \
    } while (0)

static const char FRAME[4096] = {1};

static void put_frames(PymeStreamer *streamer, const char *series, int count) {
    char name[128];
    int i;
    for (i = 0; i < count; i++) {
        snprintf(name, sizeof name, "fork_checks/%s/frame%03d", series, i);
        CHECK_STATUS(streamer_put(streamer, name, (const uint8_t *)FRAME, sizeof FRAME, i), STREAMER_OK);
    }
}

/* Everything the child checks; returns its exit status. */
static int in_the_child(PymeStreamer *streamer, PymeStreamer *doomed, PymeStream *stream,
                        const PymeStreamerOptions *options, const PymeStreamerOptions *spilling) {
    PymeStreamerStats stats;
    PymeStreamer *own = NULL;
    size_t prepared = 0;
    char message[64];
    stats.size = sizeof stats;

    CHECK_STATUS(streamer_put(streamer, "fork_checks/child/inherited", (const uint8_t *)"x", 1, -1),
                 STREAMER_ERR_FORKED);
    CHECK_STATUS(streamer_put_stream(streamer, 0, "fork_checks/child/inherited2", (const uint8_t *)"x", 1),
                 STREAMER_ERR_FORKED);
    CHECK_STATUS(streamer_prepare_buffers(streamer, 4096, 4, &prepared), STREAMER_ERR_FORKED);
    CHECK_STATUS(streamer_flush(streamer, STREAMER_WAIT_FOREVER), STREAMER_ERR_FORKED);
    CHECK_STATUS(streamer_stats(streamer, &stats, sizeof stats), STREAMER_ERR_FORKED);
    CHECK_STATUS(streamer_last_error(streamer, message, sizeof message, NULL), STREAMER_ERR_FORKED);
    CHECK(streamer_n_servers(streamer) == 1);
    CHECK_STATUS(stream_put(stream, "fork_checks/child/inherited3", (const uint8_t *)"x", 1),
                 STREAMER_ERR_FORKED);
    CHECK_STATUS(stream_flush(stream, STREAMER_WAIT_FOREVER), STREAMER_ERR_FORKED);
    CHECK_STATUS(stream_finalize(stream, "fork_checks/child/end"), STREAMER_ERR_FORKED);
    /* Before: the first waited for ever for threads that do not exist here,
     * the second ran out its 30 s. */
    CHECK_STATUS(streamer_close_timeout(doomed, 30000, &stats, sizeof stats), STREAMER_ERR_FORKED);
    CHECK_STATUS(streamer_close(streamer), STREAMER_ERR_FORKED);
    CHECK_STATUS(stream_close(stream), STREAMER_ERR_FORKED);

    /* The parent holds the spill folder. */
    CHECK_STATUS(streamer_new(spilling, &own), STREAMER_ERR_SPILL_BUSY);

    /* A streamer of its own works. */
    CHECK_STATUS(streamer_new(options, &own), STREAMER_OK);
    if (own != NULL) {
        put_frames(own, "child", 5);
        CHECK_STATUS(streamer_close(own), STREAMER_OK);
    }
    printf("child: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    PymeStreamerOptions *options = NULL;
    PymeStreamerOptions *spilling = NULL;
    PymeStreamer *second = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamer *doomed = NULL;
    PymeStream *stream = NULL;
    char host[256];
    const char *colon;
    long port;
    pid_t child;
    int status = 0;

    if (argc != 3 || (colon = strrchr(argv[1], ':')) == NULL || (size_t)(colon - argv[1]) >= sizeof host) {
        fprintf(stderr, "usage: %s HOST:PORT SPILL_DIR\n", argv[0]);
        return 2;
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = '\0';
    port = strtol(colon + 1, NULL, 10);

    CHECK_STATUS(streamer_options_new(&options), STREAMER_OK);
    CHECK_STATUS(streamer_options_add_server(options, host, (uint16_t)port), STREAMER_OK);
    CHECK_STATUS(streamer_options_new(&spilling), STREAMER_OK);
    CHECK_STATUS(streamer_options_add_server(spilling, host, (uint16_t)port), STREAMER_OK);
    CHECK_STATUS(streamer_options_set_spill_dir(spilling, argv[2]), STREAMER_OK);
    CHECK_STATUS(streamer_new(spilling, &streamer), STREAMER_OK);
    CHECK_STATUS(streamer_new(spilling, &second), STREAMER_ERR_SPILL_BUSY);
    CHECK(second == NULL);
    CHECK_STATUS(streamer_new(options, &doomed), STREAMER_OK);
    CHECK_STATUS(stream_new(host, (uint16_t)port, options, &stream), STREAMER_OK);
    if (streamer == NULL || doomed == NULL || stream == NULL) {
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }
    /* Forked while files are queued and in flight. */
    put_frames(streamer, "parent", 40);
    fflush(stdout);
    child = fork();
    if (child == 0) {
        int code = in_the_child(streamer, doomed, stream, options, spilling);
        fflush(stdout);
        _exit(code);
    }
    CHECK(child > 0);
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* The parent is not affected. */
    put_frames(doomed, "parent2", 20);
    CHECK_STATUS(stream_put(stream, "fork_checks/parent3/frame000", (const uint8_t *)FRAME, sizeof FRAME),
                 STREAMER_OK);
    CHECK_STATUS(streamer_close(streamer), STREAMER_OK);
    /* Closed: the folder is free again. */
    CHECK_STATUS(streamer_new(spilling, &second), STREAMER_OK);
    CHECK_STATUS(streamer_close(second), STREAMER_OK);
    CHECK_STATUS(streamer_close(doomed), STREAMER_OK);
    CHECK_STATUS(stream_close(stream), STREAMER_OK);
    streamer_options_free(options);
    streamer_options_free(spilling);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
