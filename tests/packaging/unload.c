/*
 * Unloading the library while its threads run: what a LabVIEW VI or a plugin host
 * does. Loads the library with dlopen (Linux) or LoadLibraryW (Windows), opens a
 * streamer to the server given, puts N_FILES files named unload/fileNNN.bin, and
 * unloads the library (dlclose / FreeLibrary) with the streamer still open and its
 * files still on their way. Then it keeps running without touching the library
 * again until the file <marker> exists (the test makes it once every file has
 * landed; at most two minutes), and exits 0.
 *
 * Prints "pinned" when the library is still mapped after the unload (it pins
 * itself: src/ffi/pin.rs), "unmapped" when it is gone. A library that is unmapped
 * while its threads run makes this process crash instead of sending the files.
 *
 *   unload <library path> <host> <port> <marker>
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
typedef HMODULE library_t;
static library_t load(const char *path) { return LoadLibraryA(path); }
static void *symbol(library_t library, const char *name) {
    return (void *)(uintptr_t)GetProcAddress(library, name);
}
static int unload(library_t library) { return FreeLibrary(library) ? 0 : 1; }
static void pause_a_moment(void) { Sleep(50); }
static int still_mapped(const char *path) {
    HMODULE module = NULL;
    const char *name = strrchr(path, '\\');
    const char *slash = strrchr(path, '/');
    if (slash != NULL && (name == NULL || slash > name)) name = slash;
    return GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                              name != NULL ? name + 1 : path, &module) != 0;
}
#else
#include <dlfcn.h>
#include <time.h>
typedef void *library_t;
static void pause_a_moment(void) {
    struct timespec moment = {0, 50 * 1000 * 1000};
    nanosleep(&moment, NULL);
}
static library_t load(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }
static void *symbol(library_t library, const char *name) { return dlsym(library, name); }
static int unload(library_t library) { return dlclose(library); }
static int still_mapped(const char *path) { return dlopen(path, RTLD_NOW | RTLD_NOLOAD) != NULL; }
#endif

#define N_FILES 40
#define FILE_BYTES (256 * 1024)

typedef int32_t (*options_new_fn)(void **);
typedef int32_t (*add_server_fn)(void *, const char *, uint16_t);
typedef int32_t (*streamer_new_fn)(const void *, void **);
typedef void (*options_free_fn)(void *);
typedef int32_t (*put_fn)(void *, const char *, const uint8_t *, size_t, int64_t);

int main(int argc, char **argv) {
    library_t library;
    options_new_fn options_new;
    add_server_fn add_server;
    streamer_new_fn streamer_new;
    options_free_fn options_free;
    put_fn put;
    void *options = NULL;
    void *streamer = NULL;
    static uint8_t data[FILE_BYTES];
    int i;
    if (argc != 5) {
        fprintf(stderr, "usage: unload <library> <host> <port> <marker>\n");
        return 2;
    }
    library = load(argv[1]);
    if (library == NULL) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 2;
    }
    options_new = (options_new_fn)(uintptr_t)symbol(library, "streamer_options_new");
    add_server = (add_server_fn)(uintptr_t)symbol(library, "streamer_options_add_server");
    streamer_new = (streamer_new_fn)(uintptr_t)symbol(library, "streamer_new");
    options_free = (options_free_fn)(uintptr_t)symbol(library, "streamer_options_free");
    put = (put_fn)(uintptr_t)symbol(library, "streamer_put");
    if (!options_new || !add_server || !streamer_new || !options_free || !put) {
        fprintf(stderr, "missing symbols\n");
        return 2;
    }
    if (options_new(&options) != 0 || add_server(options, argv[2], (uint16_t)atoi(argv[3])) != 0 ||
        streamer_new(options, &streamer) != 0) {
        fprintf(stderr, "cannot open a streamer\n");
        return 2;
    }
    options_free(options);
    for (i = 0; i < N_FILES; i++) {
        char name[64];
        memset(data, i, sizeof data);
        sprintf(name, "unload/file%03d.bin", i);
        if (put(streamer, name, data, sizeof data, i) != 0) {
            fprintf(stderr, "put %d failed\n", i);
            return 2;
        }
    }
    /* The streamer stays open: its threads are sending. */
    if (unload(library) != 0) {
        fprintf(stderr, "unloading failed\n");
        return 2;
    }
    printf("%s\n", still_mapped(argv[1]) ? "pinned" : "unmapped");
    fflush(stdout);
    for (i = 0; i < 2400; i++) {
        FILE *marker = fopen(argv[4], "r");
        if (marker != NULL) {
            fclose(marker);
            return 0;
        }
        pause_a_moment();
    }
    fprintf(stderr, "no marker %s after two minutes\n", argv[4]);
    return 3;
}
