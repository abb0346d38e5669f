/*
 * probe_msvc.c -- a program linked the way MSVC programs are: compiled for
 * x86_64-pc-windows-msvc (clang) and linked by lld-link, MSVC's command line, with
 * the Windows zip's `pyme_streaming.lib` and a `kernel32.lib` made from
 * kernel32.def, nothing else. No C runtime library of MSVC can be had here, so the
 * program uses none: its entry point is probe_main, it writes with WriteFile and
 * ends with ExitProcess. It streams 25 frames of 4 KiB to HOST:PORT and exits 0
 * only when streamer_close says every frame was acknowledged.
 *
 * Usage: probe_msvc.exe HOST PORT
 */
#define PYME_STREAMING_SHORT_NAMES 1
#include <pyme_streaming.h>

#define FRAMES 25
#define STD_OUTPUT_HANDLE ((unsigned long)-11)

__declspec(dllimport) void *__stdcall GetStdHandle(unsigned long which);
__declspec(dllimport) int __stdcall WriteFile(void *file, const void *data, unsigned long size,
                                              unsigned long *written, void *overlapped);
__declspec(dllimport) char *__stdcall GetCommandLineA(void);
__declspec(dllimport) __declspec(noreturn) void __stdcall ExitProcess(unsigned int code);

static void say(const char *text) {
    unsigned long length = 0, written = 0;
    while (text[length] != '\0') length++;
    WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), text, length, &written, 0);
}

/* The next word of a command line (no quotes needed here), NUL-terminated in place. */
static char *next_word(char **cursor) {
    char *word;
    while (**cursor == ' ' || **cursor == '\t') (*cursor)++;
    word = *cursor;
    while (**cursor != '\0' && **cursor != ' ' && **cursor != '\t') (*cursor)++;
    if (**cursor != '\0') *(*cursor)++ = '\0';
    return word;
}

static void end(const char *message, int32_t status, unsigned int code) {
    say(message);
    if (status != 0) say(streamer_status_str(status));
    say("\n");
    ExitProcess(code);
}

static unsigned char frame[4096];

void probe_main(void) {
    char *cursor = GetCommandLineA();
    char *host, *port_text;
    char name[32] = "lld_link/frame00.raw";
    unsigned int port = 0;
    unsigned int i, j;
    StreamerOptions *options = 0;
    Streamer *streamer = 0;
    int32_t status;

    next_word(&cursor); /* the program */
    host = next_word(&cursor);
    port_text = next_word(&cursor);
    for (; *port_text >= '0' && *port_text <= '9'; port_text++) port = port * 10 + (unsigned)(*port_text - '0');
    if (*host == '\0' || port == 0 || port > 65535) end("usage: probe_msvc.exe HOST PORT", 0, 2);

    say("pyme_streaming ");
    say(streamer_version());
    say("\n");
    status = streamer_options_new(&options);
    if (status != STREAMER_OK) end("probe: streamer_options_new: ", status, 4);
    status = streamer_options_add_server(options, host, (uint16_t)port);
    if (status != STREAMER_OK) end("probe: streamer_options_add_server: ", status, 4);
    status = streamer_new(options, &streamer);
    streamer_options_free(options);
    if (status != STREAMER_OK) end("probe: streamer_new: ", status, 5);
    for (i = 0; i < FRAMES; i++) {
        for (j = 0; j < sizeof frame; j++) frame[j] = (unsigned char)i;
        name[14] = (char)('0' + i / 10);
        name[15] = (char)('0' + i % 10);
        status = streamer_put(streamer, name, frame, sizeof frame, i);
        if (status != STREAMER_OK) {
            streamer_close(streamer);
            end("probe: streamer_put: ", status, 6);
        }
    }
    status = streamer_close(streamer);
    if (status != STREAMER_OK) end("probe: streamer_close: ", status, 7);
    end("probe: all 25 frames acknowledged", 0, 0);
}
