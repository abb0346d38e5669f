/*
 * A plugin host: loads every plugin given with dlopen(RTLD_NOW | RTLD_GLOBAL) first,
 * then runs each one's plugin_run against the server, and prints for each
 * "<plugin> <status> <object whose streamer_put it called>".
 *
 *   plugin_host <host> <port> <plugin.so>...
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*run_fn)(const char *, int, char *, size_t);

int main(int argc, char **argv) {
    void *handles[8];
    int i, n = argc - 3;
    if (argc < 4 || n > 8) {
        fprintf(stderr, "usage: plugin_host <host> <port> <plugin>...\n");
        return 2;
    }
    for (i = 0; i < n; i++) {
        handles[i] = dlopen(argv[3 + i], RTLD_NOW | RTLD_GLOBAL);
        if (handles[i] == NULL) {
            fprintf(stderr, "%s\n", dlerror());
            return 2;
        }
    }
    for (i = 0; i < n; i++) {
        char where[4096];
        run_fn run = (run_fn)(uintptr_t)dlsym(handles[i], "plugin_run");
        if (run == NULL) return 2;
        printf("%s %d %s\n", argv[3 + i], run(argv[1], atoi(argv[2]), where, sizeof where), where);
    }
    return 0;
}
