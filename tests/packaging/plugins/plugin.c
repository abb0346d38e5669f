/*
 * A plugin with its own copy of the static library. plugin_run streams N_FILES files
 * named PLUGIN_NAME/fileNN.bin (gzip on the wire when GZIP_LEVEL > 0) and writes to
 * `where` the file of the object whose streamer_put it called: its own, unless another
 * plugin's copy interposed it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <pyme_streaming.h>

int plugin_run(const char *host, int port, char *where, size_t where_len);

int plugin_run(const char *host, int port, char *where, size_t where_len) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats stats;
    Dl_info info;
    uint8_t data[1000];
    int32_t status;
    int i;
    if (!dladdr((void *)(uintptr_t)&streamer_put, &info) || info.dli_fname == NULL) return -100;
    snprintf(where, where_len, "%s", info.dli_fname);
    if (streamer_options_new(&options) != STREAMER_OK) return -101;
    if (streamer_options_add_server(options, host, (uint16_t)port) != STREAMER_OK) return -102;
    if (GZIP_LEVEL > 0 && streamer_options_set_filter_gzip(options, GZIP_LEVEL) != STREAMER_OK) return -103;
    status = streamer_new(options, &streamer);
    streamer_options_free(options);
    if (status != STREAMER_OK) return status;
    for (i = 0; i < N_FILES; i++) {
        char name[64];
        memset(data, 'a' + i, sizeof data);
        snprintf(name, sizeof name, "%s/file%02d.bin", PLUGIN_NAME, i);
        status = streamer_put(streamer, name, data, sizeof data, i);
        if (status != STREAMER_OK) return status;
    }
    status = streamer_close_stats(streamer, &stats, sizeof stats);
    if (status != STREAMER_OK) return status;
    return stats.files_acknowledged == N_FILES ? 0 : -104;
}
