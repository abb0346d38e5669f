/*
 * A plugin host: loads every plugin given with dlopen(RTLD_NOW | RTLD_GLOBAL) first
 * (LoadLibrary on Windows),
 * then runs each one's plugin_run against the server, and prints for each
 * "<plugin> <status> <object whose streamer_put it called>".
 *
 *   plugin_host <host> <port> <plugin.so>...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef _WIN32
#include <windows.h>
static void *load(const char *path) { return (void *)LoadLibraryA(path); }
static void *symbol(void *library, const char *name) {
    return (void *)(uintptr_t)GetProcAddress((HMODULE)library, name);
}
static const char *load_error(void) { return "LoadLibrary failed"; }
#else
#include <dlfcn.h>
static void *load(const char *path) { return dlopen(path, RTLD_NOW | RTLD_GLOBAL); }
static void *symbol(void *library, const char *name) { return dlsym(library, name); }
static const char *load_error(void) { return dlerror(); }
#endif

typedef int (*run_fn)(const char *, int, char *, size_t);

int main(int argc, char **argv) {
    void *handles[8];
    int i, n = argc - 3;
    if (argc < 4 || n > 8) {
        fprintf(stderr, "usage: plugin_host <host> <port> <plugin>...\n");
        return 2;
    }
    for (i = 0; i < n; i++) {
        handles[i] = load(argv[3 + i]);
        if (handles[i] == NULL) {
            fprintf(stderr, "%s\n", load_error());
            return 2;
        }
    }
    for (i = 0; i < n; i++) {
        char where[4096];
        run_fn run = (run_fn)(uintptr_t)symbol(handles[i], "plugin_run");
        if (run == NULL) return 2;
        printf("%s %d %s\n", argv[3 + i], run(argv[1], atoi(argv[2]), where, sizeof where), where);
    }
    return 0;
}
