/*
 * stream_frames.c -- stream synthetic camera frames to PYME data servers (C99).
 *
 * Usage: stream_frames [-n FRAMES] [-s FRAME_BYTES] [-p SERIES] HOST:PORT [HOST:PORT...]
 *
 * Frame i is stored as SERIES/frame%05d.raw on server i % n_servers (a
 * round-robin distribution callback), through a filter callback that appends
 * an 8-byte trailer ("PYME" and the frame's length, little-endian). Prints the
 * statistics; exits non-zero when any frame was not acknowledged.
 */
#include <pyme_streaming.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERVERS 64

/* The distribution callback: runs inside streamer_put, on this thread. */
static size_t round_robin(void *user_data, size_t n_servers, int64_t index, const char *name) {
    (void)user_data;
    (void)name;
    if (index < 0) return 0;
    return (size_t)(index % (int64_t)n_servers);
}

/* The filter callback: runs on the library's sender thread of each server. */
static int32_t append_trailer(void *user_data, const char *name, const uint8_t *data, size_t len,
                              PymeStreamerBuffer *out) {
    uint8_t trailer[8] = {'P', 'Y', 'M', 'E', 0, 0, 0, 0};
    int i;
    (void)user_data;
    (void)name;
    for (i = 0; i < 4; i++) trailer[4 + i] = (uint8_t)((uint32_t)len >> (8 * i));
    if (streamer_buffer_reserve(out, len + sizeof trailer) != STREAMER_OK) return 1;
    if (streamer_buffer_append(out, data, len) != STREAMER_OK) return 1;
    return streamer_buffer_append(out, trailer, sizeof trailer);
}

static int split_address(const char *text, char *host, size_t host_size, uint16_t *port) {
    const char *colon = strrchr(text, ':');
    long value;
    size_t host_len;
    if (colon == NULL) return 0;
    host_len = (size_t)(colon - text);
    if (host_len == 0 || host_len >= host_size) return 0;
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    value = strtol(colon + 1, NULL, 10);
    if (value <= 0 || value > 65535) return 0;
    *port = (uint16_t)value;
    return 1;
}

static void print_error(const char *what, int32_t status, const char *detail) {
    fprintf(stderr, "stream_frames: %s: %s (%d)%s%s\n", what, streamer_status_str(status), (int)status,
            detail[0] ? ": " : "", detail);
}

int main(int argc, char **argv) {
    long n_frames = 100;
    long frame_bytes = 64 * 1024;
    const char *series = "stream_frames";
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats stats;
    uint8_t *frame = NULL;
    char message[512];
    size_t message_len = 0;
    int32_t status;
    int n_servers = 0;
    int arg;
    long i;

    if (streamer_options_new(&options) != STREAMER_OK) return 1;
    for (arg = 1; arg < argc; arg++) {
        if (strcmp(argv[arg], "-n") == 0 && arg + 1 < argc) {
            n_frames = strtol(argv[++arg], NULL, 10);
        } else if (strcmp(argv[arg], "-s") == 0 && arg + 1 < argc) {
            frame_bytes = strtol(argv[++arg], NULL, 10);
        } else if (strcmp(argv[arg], "-p") == 0 && arg + 1 < argc) {
            series = argv[++arg];
        } else {
            char host[256];
            uint16_t port = 0;
            if (!split_address(argv[arg], host, sizeof host, &port)) {
                fprintf(stderr, "stream_frames: not HOST:PORT: %s\n", argv[arg]);
                streamer_options_free(options);
                return 2;
            }
            status = streamer_options_add_server(options, host, port);
            if (status != STREAMER_OK) {
                streamer_options_last_error(options, message, sizeof message, &message_len);
                print_error("add_server", status, message);
                streamer_options_free(options);
                return 2;
            }
            n_servers++;
        }
    }
    if (n_servers == 0 || n_frames <= 0 || frame_bytes <= 0) {
        fprintf(stderr, "usage: %s [-n FRAMES] [-s FRAME_BYTES] [-p SERIES] HOST:PORT [HOST:PORT...]\n", argv[0]);
        streamer_options_free(options);
        return 2;
    }

    streamer_options_set_distribution(options, round_robin, NULL);
    streamer_options_set_filter(options, append_trailer, NULL);
    status = streamer_new(options, &streamer);
    if (status != STREAMER_OK) {
        streamer_options_last_error(options, message, sizeof message, &message_len);
        print_error("streamer_new", status, message);
        streamer_options_free(options);
        return 1;
    }
    streamer_options_free(options); /* the streamer keeps its own copy */

    frame = (uint8_t *)malloc((size_t)frame_bytes);
    if (frame == NULL) {
        streamer_close(streamer);
        return 1;
    }
    for (i = 0; i < n_frames; i++) {
        char name[512];
        long b;
        for (b = 0; b < frame_bytes; b++) frame[b] = (uint8_t)(i + b); /* a synthetic image */
        snprintf(name, sizeof name, "%s/frame%05ld.raw", series, i);
        status = streamer_put(streamer, name, frame, (size_t)frame_bytes, (int64_t)i); /* copies */
        if (status != STREAMER_OK) {
            streamer_last_error(streamer, message, sizeof message, &message_len);
            print_error("put", status, message);
            break;
        }
    }
    free(frame);

    status = streamer_close_stats(streamer, &stats, sizeof stats); /* drains, waits for every answer, frees */
    printf("servers %d, frames %ld of %ld bytes\n", n_servers, n_frames, frame_bytes);
    printf("files: queued %llu, sent %llu, acknowledged %llu, failed %llu\n",
           (unsigned long long)stats.files_queued, (unsigned long long)stats.files_sent,
           (unsigned long long)stats.files_acknowledged, (unsigned long long)stats.files_failed);
    printf("bytes: queued %llu, sent %llu, acknowledged %llu\n", (unsigned long long)stats.bytes_queued,
           (unsigned long long)stats.bytes_sent, (unsigned long long)stats.bytes_acknowledged);
    if (status != STREAMER_OK || stats.files_acknowledged != (uint64_t)n_frames) {
        fprintf(stderr, "stream_frames: %llu of %ld frames lost (%s)\n",
                (unsigned long long)((uint64_t)n_frames - stats.files_acknowledged), n_frames,
                streamer_status_str(status));
        return 1;
    }
    printf("all %ld frames acknowledged\n", n_frames);
    return 0;
}
