/*
 * pzf_frames.c -- stream uint16 camera frames as PZF files without a single
 * callback, the way a LabVIEW VI or a scripting host would (C99).
 *
 * Usage: pzf_frames [-n FRAMES] [-w WIDTH] [-h HEIGHT] [-q] [-p SERIES] HOST:PORT [HOST:PORT...]
 *
 * Frame i (WIDTH x HEIGHT uint16 pixels, a dark level of 100 plus a ramp) is
 * stored as SERIES/frame%05d.pzf on server i % n_servers by the built-in
 * round-robin distribution, Huffman-coded by the built-in PZF filter (-q:
 * square-root quantized too). Exits non-zero when any frame was not
 * acknowledged.
 */
#include <pyme_streaming.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, int32_t status, const PymeStreamerOptions *options) {
    char message[512] = "";
    size_t len = 0;
    if (options != NULL) streamer_options_last_error(options, message, sizeof message, &len);
    fprintf(stderr, "pzf_frames: %s: %s %s\n", what, streamer_status_str(status), message);
    return 1;
}

int main(int argc, char **argv) {
    long n_frames = 10, width = 256, height = 128;
    int quantize = 0;
    const char *series = "pzf_series";
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats stats;
    uint16_t *pixels;
    char name[256];
    int32_t status;
    int arg, n_servers = 0;
    long i, p;

    if (streamer_options_new(&options) != STREAMER_OK) return 1;
    for (arg = 1; arg < argc; arg++) {
        if (strcmp(argv[arg], "-n") == 0 && arg + 1 < argc) {
            n_frames = strtol(argv[++arg], NULL, 10);
        } else if (strcmp(argv[arg], "-w") == 0 && arg + 1 < argc) {
            width = strtol(argv[++arg], NULL, 10);
        } else if (strcmp(argv[arg], "-h") == 0 && arg + 1 < argc) {
            height = strtol(argv[++arg], NULL, 10);
        } else if (strcmp(argv[arg], "-q") == 0) {
            quantize = 1;
        } else if (strcmp(argv[arg], "-p") == 0 && arg + 1 < argc) {
            series = argv[++arg];
        } else {
            char host[200];
            const char *colon = strrchr(argv[arg], ':');
            size_t host_len = colon == NULL ? 0 : (size_t)(colon - argv[arg]);
            if (colon == NULL || host_len == 0 || host_len >= sizeof host) {
                fprintf(stderr, "pzf_frames: not HOST:PORT: %s\n", argv[arg]);
                streamer_options_free(options);
                return 2;
            }
            memcpy(host, argv[arg], host_len);
            host[host_len] = '\0';
            status = streamer_options_add_server(options, host, (uint16_t)atoi(colon + 1));
            if (status != STREAMER_OK) return fail("add_server", status, options);
            n_servers++;
        }
    }
    if (n_servers == 0 || n_frames <= 0 || width <= 0 || height <= 0) {
        fprintf(stderr, "usage: %s [-n FRAMES] [-w WIDTH] [-h HEIGHT] [-q] [-p SERIES] HOST:PORT...\n", argv[0]);
        streamer_options_free(options);
        return 2;
    }
    /* Everything by value: no function pointer crosses into the library. */
    status = streamer_options_set_distribution_kind(options, STREAMER_DISTRIBUTION_ROUND_ROBIN);
    if (status != STREAMER_OK) return fail("distribution", status, options);
    status = streamer_options_set_filter_pzf(options, STREAMER_PZF_UINT16, (uint32_t)height, (uint32_t)width, 1,
                                             STREAMER_PZF_HUFFMAN,
                                             quantize ? STREAMER_PZF_QUANT_SQRT : STREAMER_PZF_QUANT_NONE,
                                             100.0f, 1.0f);
    if (status != STREAMER_OK) return fail("filter", status, options);
    status = streamer_new(options, &streamer);
    if (status != STREAMER_OK) {
        fail("streamer_new", status, options);
        streamer_options_free(options);
        return 1;
    }
    streamer_options_free(options);

    pixels = malloc((size_t)(width * height) * sizeof *pixels);
    if (pixels == NULL) return 1;
    for (i = 0; i < n_frames; i++) {
        for (p = 0; p < width * height; p++) pixels[p] = (uint16_t)(100 + (p + i) % 64);
        snprintf(name, sizeof name, "%s/frame%05ld.pzf", series, i);
        status = streamer_put(streamer, name, (const uint8_t *)pixels, (size_t)(width * height) * sizeof *pixels, i);
        if (status != STREAMER_OK) fprintf(stderr, "pzf_frames: put %s: %s\n", name, streamer_status_str(status));
    }
    free(pixels);
    status = streamer_close_stats(streamer, &stats, sizeof stats);
    printf("frames %ld, acknowledged %llu, failed %llu, raw bytes %llu, sent %llu\n", n_frames,
           (unsigned long long)stats.files_acknowledged, (unsigned long long)stats.files_failed,
           (unsigned long long)stats.bytes_queued, (unsigned long long)stats.bytes_sent);
    return status == STREAMER_OK && stats.files_acknowledged == (uint64_t)n_frames ? 0 : 1;
}
