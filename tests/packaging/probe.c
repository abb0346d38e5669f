/*
 * probe.c -- the smallest program a packaging test links against an installed
 * pyme_streaming (shared, static, pkg-config, the Windows DLL under Wine): it streams
 * N frames of 4 KiB round-robin to the servers given and exits 0 only when
 * streamer_close says every frame was acknowledged.
 *
 * Usage: probe FRAMES PREFIX HOST:PORT [HOST:PORT...]
 *
 * With -DPROBE_WITH_SQLITE it also uses the program's own SQLite (as a driver with
 * its own SQLite would) and prints sqlite3_libversion(): linking it with the static
 * library must neither clash nor pick the library's bundled copy.
 *
 * It asks for the short type names (PYME_STREAMING_SHORT_NAMES), so it builds whether
 * the C types have their Pyme prefix or not.
 */
#define PYME_STREAMING_SHORT_NAMES 1
#include <pyme_streaming.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PROBE_WITH_SQLITE
#include <sqlite3.h>

static int own_sqlite(void) {
    sqlite3 *db = NULL;
    sqlite3_stmt *statement = NULL;
    int answer = -1;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) return -1;
    if (sqlite3_prepare_v2(db, "SELECT 6 * 7", -1, &statement, NULL) == SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW) {
        answer = sqlite3_column_int(statement, 0);
    }
    sqlite3_finalize(statement);
    sqlite3_close(db);
    printf("own sqlite %s answered %d\n", sqlite3_libversion(), answer);
    return answer == 42 ? 0 : -1;
}
#endif

int main(int argc, char **argv) {
    static unsigned char frame[4096];
    char host[256];
    char name[128];
    StreamerOptions *options = NULL;
    Streamer *streamer = NULL;
    long frames;
    int i;
    int32_t status;

    if (argc < 4) {
        fprintf(stderr, "usage: probe FRAMES PREFIX HOST:PORT [HOST:PORT...]\n");
        return 2;
    }
#ifdef PROBE_WITH_SQLITE
    if (own_sqlite() != 0) return 3;
#endif
    frames = strtol(argv[1], NULL, 10);
    printf("pyme_streaming %s\n", streamer_version());
    if (streamer_options_new(&options) != STREAMER_OK) return 4;
    for (i = 3; i < argc; i++) {
        const char *colon = strrchr(argv[i], ':');
        size_t host_len = colon ? (size_t)(colon - argv[i]) : 0;
        if (host_len == 0 || host_len >= sizeof host) {
            fprintf(stderr, "probe: not HOST:PORT: %s\n", argv[i]);
            return 2;
        }
        memcpy(host, argv[i], host_len);
        host[host_len] = '\0';
        status = streamer_options_add_server(options, host,
                                             (uint16_t)strtol(colon + 1, NULL, 10));
        if (status != STREAMER_OK) return 4;
    }
    status = streamer_new(options, &streamer);
    streamer_options_free(options);
    if (status != STREAMER_OK) {
        fprintf(stderr, "probe: streamer_new: %s\n", streamer_status_str(status));
        return 5;
    }
    for (i = 0; i < frames; i++) {
        memset(frame, i & 0xff, sizeof frame);
        sprintf(name, "%s/frame%05d.raw", argv[2], i);
        status = streamer_put(streamer, name, frame, sizeof frame, i);
        if (status != STREAMER_OK) {
            fprintf(stderr, "probe: streamer_put: %s\n", streamer_status_str(status));
            streamer_close(streamer);
            return 6;
        }
    }
    status = streamer_close(streamer);
    if (status != STREAMER_OK) {
        fprintf(stderr, "probe: streamer_close: %s\n", streamer_status_str(status));
        return 7;
    }
    printf("probe: all %ld frames acknowledged\n", frames);
    return 0;
}
