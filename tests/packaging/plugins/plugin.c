/*
 * A plugin with its own copy of the static library. plugin_run streams N_FILES files
 * named PLUGIN_NAME/fileNN.bin (gzip on the wire when GZIP_LEVEL > 0) and writes to
 * `where` the file of the object whose streamer_put it called: its own, unless another
 * plugin's copy interposed it. On Windows the entry point is dllexport'ed unless
 * NO_DLLEXPORT is defined (then a mingw DLL without a .def exports every symbol).
 */
#ifndef _WIN32
#define _GNU_SOURCE /* dladdr */
#endif
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <pyme_streaming.h>

#ifdef _WIN32
#include <windows.h>
#ifdef NO_DLLEXPORT
#define PLUGIN_EXPORT
#else
#define PLUGIN_EXPORT __declspec(dllexport)
#endif
/* The file of the module that holds `address`. */
static int module_of(const void *address, char *where, size_t where_len) {
    HMODULE module = NULL;
    if (!GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                            (const char *)address, &module))
        return 0;
    return GetModuleFileNameA(module, where, (DWORD)where_len) > 0;
}
#else
#include <dlfcn.h>
#define PLUGIN_EXPORT
static int module_of(const void *address, char *where, size_t where_len) {
    Dl_info info;
    if (!dladdr(address, &info) || info.dli_fname == NULL) return 0;
    snprintf(where, where_len, "%s", info.dli_fname);
    return 1;
}
#endif

PLUGIN_EXPORT int plugin_run(const char *host, int port, char *where, size_t where_len);

PLUGIN_EXPORT int plugin_run(const char *host, int port, char *where, size_t where_len) {
    PymeStreamerOptions *options = NULL;
    PymeStreamer *streamer = NULL;
    PymeStreamerStats stats;
    uint8_t data[1000];
    int32_t status;
    int i;
    if (!module_of((const void *)(uintptr_t)&streamer_put, where, where_len)) return -100;
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
