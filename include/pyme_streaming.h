/*
 * pyme_streaming.h -- the C API of pyme-streaming: stream files (above all camera
 * frames) to a cluster of PYME data servers over persistent, pipelined HTTP/1.1
 * connections, with every file accounted for.
 *
 * Usage:
 *   PymeStreamerOptions *options; PymeStreamer *streamer; PymeStreamerStats stats;
 *   streamer_options_new(&options);
 *   streamer_options_add_server(options, "127.0.0.1", 15348);
 *   streamer_new(options, &streamer);          -- connects; one down starts down
 *   streamer_options_free(options);            -- options are copied
 *   streamer_put(streamer, "series/frame00000.pzf", data, len, 0);  -- copies data
 *   ...
 *   status = streamer_close_stats(streamer, &stats, sizeof stats);  -- drains, frees
 *
 * Conventions (docs/C_API.md, "API conventions", says more):
 *   - Types are prefixed Pyme (PymeStreamer, PymeStream, PymeStreamerOptions,
 *     PymeStreamerStats...); functions keep their short names (streamer_put...).
 *     Handles are opaque pointers.
 *   - Every function that can fail returns an int32_t status: STREAMER_OK (0)
 *     or a negative STREAMER_ERR_* code (the enum PymeStreamerStatus);
 *     streamer_status_str() gives its text. Results go through out-parameters,
 *     written only on success (the *_close_stats functions are the documented
 *     exception).
 *   - Handle first, inputs next, outputs last; a size_t length follows every
 *     buffer; a stats struct is followed by its size (sizeof(PymeStreamerStats)).
 *   - A const pointer argument is not changed. Each function says what it
 *     consumes: *_free and *_close* take the handle (except when they return
 *     STREAMER_ERR_IN_CALLBACK), streamer_put_nocopy takes the bytes until
 *     their release callback; nothing else takes ownership of anything.
 *   - Every pointer is checked: NULL gives STREAMER_ERR_NULL_ARGUMENT, never a
 *     crash. *_free(NULL) and *_close(NULL) do nothing and return STREAMER_OK.
 *   - Last error, per thread: streamer_last_error / stream_last_error /
 *     streamer_options_last_error give the message of the last call that
 *     failed on that handle from the calling thread (two threads never read
 *     each other's); inside a completion callback, that file's failure.
 *   - Strings are NUL-terminated UTF-8. Strings the library returns are static.
 *   - No panic crosses this boundary: an internal bug gives STREAMER_ERR_PANIC.
 *   - Valid C89 and C++98 and later (compiled in every mode by the tests).
 *
 * Guarantees:
 *   - Every put that returns STREAMER_OK gets exactly one outcome (completion
 *     callback and statistics), whatever fails; a close returns only when every
 *     file has one (or, bounded, within its limit + STREAMER_CLOSE_MARGIN_MS).
 *   - An acknowledged file is stored with these bytes: a 405 ("exists") for a
 *     file that may have landed counts only when the stored bytes are read back
 *     and equal; otherwise STREAMER_ERR_NAME_TAKEN.
 *   - Storage is at least once across servers after a failover: a file in
 *     flight on a connection that failed is sent again elsewhere and may then
 *     exist on two servers; each such resend is counted in
 *     PymeStreamerStats.resent_maybe_stored. A file whose name starts with
 *     __aggregate_ (it appends on its server) is never moved by failover: it
 *     waits for its server, spills or fails; an append whose answer was lost
 *     when its server crashed is stored twice when sent again.
 *   - Starting: streamer_new succeeds while servers cannot be reached; they
 *     start STREAMER_SERVER_DOWN and are connected with the reconnect backoff,
 *     and puts go to the live ones (with none: the spill folder, or
 *     STREAMER_ERR_SERVER_DOWN at once). streamer_options_set_require_all_servers
 *     refuses to start instead. A host name that does not exist is an error.
 *     streamer_server_state reads each server's state (PymeStreamerServerState).
 *   - Closing: spilled files are sent while a server takes them; they are kept
 *     in the spill folder (STREAMER_ERR_SPILLED) once no server has taken a
 *     file for one connect plus one response timeout.
 *
 * Thread safety:
 *   - PymeStreamerOptions: not thread-safe; fill it from one thread. A streamer
 *     or stream copies what it needs, so options can be freed right after *_new.
 *   - PymeStreamer: streamer_put, streamer_put_nocopy, streamer_put_stream,
 *     streamer_stats, streamer_flush, streamer_last_error, streamer_n_servers,
 *     streamer_server_state and streamer_server_stats may run concurrently on one
 *     handle from any number of threads (the last two take no lock a put takes).
 *     The streamer_close* functions must not run concurrently with any other
 *     call on that handle, and nothing may use the handle after them.
 *   - PymeStream: stream_put, stream_flush, stream_stats, stream_last_error and
 *     stream_finalize may run concurrently (finalize waits for puts in progress;
 *     puts after it return STREAMER_ERR_CLOSED). The stream_close* functions
 *     must not run concurrently with any other call on that handle.
 *   - A put blocks while the chosen server's queue is full (up to the put
 *     timeout), except from inside a callback, where it never waits.
 *     Files put from one thread to one server are sent in put order.
 *
 * Callbacks (all optional; built-in distributions and filters need none). The
 * typedef of each says which thread calls it, whether calls overlap, how long
 * its pointers are valid and what it may call. In short: any callback may call
 * the stats, last-error, status and put functions (a put there never waits);
 * *_flush, *_close*, stream_finalize return STREAMER_ERR_IN_CALLBACK there
 * (they would wait for the callback itself). Callbacks must not throw C++
 * exceptions or longjmp out.
 *   - PymeStreamerDistributionFn: on the thread calling put, inside put.
 *   - PymeStreamerFilterFn: on the sender thread of the file's server.
 *   - PymeStreamerCompletionFn: on a library thread of the file's server.
 *   - PymeStreamerReleaseFn: on a library thread, or inside put when put fails.
 *   - PymeStreamerServerStateFn: on a library thread of the server that changed.
 *
 * fork(): a streamer or stream belongs to the process that made it. In a child
 * forked while one is open (its threads do not exist there), every function
 * that returns a status returns STREAMER_ERR_FORKED at once for that handle
 * and does nothing else; streamer_close* / stream_close* return it too and
 * only free the handle's memory: no wait, no shutdown of the parent's
 * connections, no callback. Functions without a status still answer:
 * streamer_n_servers gives the server count. The fork is seen without a
 * system call (a pthread_atfork handler). The parent is not affected; the
 * child may make streamers of its own. A child does not keep the parent's
 * spill folder lock.
 */

#ifndef PYME_STREAMING_H
#define PYME_STREAMING_H

/*
 * Generated by cbindgen from src/ffi/ -- do not edit.
 * Regenerate: PYME_REGEN_HEADER=1 cargo test --test header
 */

#include <stddef.h>
#include <stdint.h>

/*
 * The `server_index` a completion callback receives for a file that was never
 * sent to any server (it failed in the spill folder).
 */
#define STREAMER_NO_SERVER SIZE_MAX

#ifdef __cplusplus
extern "C" {
#endif


/** The version of this header, as Cargo.toml; streamer_version() gives the library's. */
#define PYME_STREAMING_VERSION_MAJOR 0
#define PYME_STREAMING_VERSION_MINOR 1
#define PYME_STREAMING_VERSION_PATCH 0
#define PYME_STREAMING_VERSION "0.1.0"


/**
 * Waits as long as it takes (`streamer_flush`, and no limit for
 * `streamer_close_timeout` / `stream_close_timeout`).
 */
#define STREAMER_WAIT_FOREVER 4294967295u

/**
 * How long `streamer_close_timeout` / `stream_close_timeout` may take beyond
 * their limit, in milliseconds (to give up the pending files and join the threads).
 */
#define STREAMER_CLOSE_MARGIN_MS 500u

/**
 * The status codes: what every fallible function returns (as `int32_t`), and
 * the `status` a completion callback receives.
 */
typedef enum PymeStreamerStatus {
    /**
     * Success.
     */
    STREAMER_OK = 0,
    /**
     * A pointer argument was NULL.
     */
    STREAMER_ERR_NULL_ARGUMENT = -1,
    /**
     * An argument is out of its range (a zero port, an unknown kind, a zero limit...).
     */
    STREAMER_ERR_INVALID_ARGUMENT = -2,
    /**
     * A string argument is not valid UTF-8.
     */
    STREAMER_ERR_UTF8 = -3,
    /**
     * The file name cannot be sent (it breaks the rules the data server applies,
     * shared in `pyme_streaming::name`); nothing was queued.
     */
    STREAMER_ERR_INVALID_NAME = -4,
    /**
     * The options name no server.
     */
    STREAMER_ERR_NO_SERVERS = -5,
    /**
     * A server address is not a valid `host:port`.
     */
    STREAMER_ERR_BAD_SERVER_ADDRESS = -6,
    /**
     * A server did not accept a connection.
     */
    STREAMER_ERR_CONNECT = -7,
    /**
     * The distribution chose a server index >= the number of servers; nothing was queued.
     */
    STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE = -8,
    /**
     * `streamer_put_stream` named a server index that does not exist; nothing was queued.
     */
    STREAMER_ERR_NO_SUCH_STREAM = -9,
    /**
     * The queue stayed full for the whole put timeout (at once for a put from a
     * callback); nothing was queued.
     */
    STREAMER_ERR_QUEUE_FULL = -10,
    /**
     * The streamer or stream is closing, closed or finalized; nothing was queued.
     */
    STREAMER_ERR_CLOSED = -11,
    /**
     * The chosen server's connection failed earlier; nothing was queued.
     */
    STREAMER_ERR_SERVER_DOWN = -12,
    /**
     * The filter failed for this file (a filter callback returned non-zero); nothing was sent for it.
     */
    STREAMER_ERR_FILTER = -13,
    /**
     * The server answered with a non-2xx HTTP status (for example 405: the file exists).
     */
    STREAMER_ERR_HTTP = -14,
    /**
     * The connection failed before the file's answer arrived.
     */
    STREAMER_ERR_CONNECTION_LOST = -15,
    /**
     * The wait ended before every file had its outcome (`streamer_flush`).
     */
    STREAMER_ERR_TIMEOUT = -16,
    /**
     * The close (or finalize) completed, but not every file was acknowledged.
     */
    STREAMER_ERR_FILES_FAILED = -17,
    /**
     * An internal error (a bug): the library caught a panic. The handle may be unusable.
     */
    STREAMER_ERR_PANIC = -18,
    /**
     * The requested feature is not built into this library.
     */
    STREAMER_ERR_UNSUPPORTED = -19,
    /**
     * No server of the cluster could be found by its serverfilter.
     */
    STREAMER_ERR_DISCOVERY = -20,
    /**
     * No server came back before close: the file waits in the spill folder.
     */
    STREAMER_ERR_SPILLED = -21,
    /**
     * The spill folder could not be used.
     */
    STREAMER_ERR_SPILL_FOLDER = -22,
    /**
     * Called from inside a callback of this library, where it would wait for that
     * very callback (`*_flush`, `*_close*`, `stream_finalize`); nothing was done and
     * the handle stays valid.
     */
    STREAMER_ERR_IN_CALLBACK = -23,
    /**
     * A bounded close reached its limit: the files still pending were given up (a
     * file's completion status when it was one of them; the close's status then).
     */
    STREAMER_ERR_CLOSE_TIMEOUT = -24,
    /**
     * As `STREAMER_ERR_CLOSE_TIMEOUT`, and a library thread was still busy (inside
     * a callback or filter that began before the limit, or reconnecting): it was
     * left to end on its own; a running callback's `user_data` must stay valid
     * until it returns. No other callback starts.
     */
    STREAMER_ERR_CLOSE_DETACHED = -25,
    /**
     * The server already holds other bytes under the file's name (storage is
     * write-once), or a file that may have landed before could not be shown to
     * hold the same bytes: not stored (a spilled file stays in the folder).
     */
    STREAMER_ERR_NAME_TAKEN = -26,
    /**
     * The spill folder is in use by another streamer or stream, in this process
     * or another, or is a data server's storage root (its lock file
     * `.pyme-lock` is held): nothing was opened.
     */
    STREAMER_ERR_SPILL_BUSY = -27,
    /**
     * Called in a child process forked while this handle was open: the handle
     * belongs to the parent (its threads do not exist in the child). Nothing
     * was done; `*_close`/`*_free` there only release the handle's memory.
     */
    STREAMER_ERR_FORKED = -28,
    /**
     * The process may not open the descriptors (sockets, files) the streamer
     * needs for its servers (`RLIMIT_NOFILE`, checked at start): nothing was
     * opened. The message says how many are needed and what to raise (`ulimit -n`).
     */
    STREAMER_ERR_LIMITS = -29
} PymeStreamerStatus;

/**
 * The built-in distributions (`streamer_options_set_distribution_kind`).
 */
typedef enum PymeStreamerDistribution {
    /**
     * `index % n_servers` (a frame number spreads frames evenly); a random server
     * when put is given no index. The default.
     */
    STREAMER_DISTRIBUTION_ROUND_ROBIN = 0,
    /**
     * A random server for every file.
     */
    STREAMER_DISTRIBUTION_RANDOM = 1,
    /**
     * Always one server: the one set by `streamer_options_set_fixed_server` (default 0).
     */
    STREAMER_DISTRIBUTION_FIXED = 2,
    /**
     * A stable hash of the file name (without `?query`): a name always lands on the
     * same server of a cluster of the same size.
     */
    STREAMER_DISTRIBUTION_HASH = 3,
    /**
     * The live server with the least outstanding work (bytes not yet
     * acknowledged, over its measured drain rate); ties round-robin, so a uniform
     * cluster stays round-robin.
     */
    STREAMER_DISTRIBUTION_LEAST_LOADED = 4
} PymeStreamerDistribution;

/**
 * The built-in filters without parameters (`streamer_options_set_filter_kind`).
 */
typedef enum PymeStreamerFilter {
    /**
     * Send the bytes unchanged (the default; no copy is made).
     */
    STREAMER_FILTER_IDENTITY = 0
} PymeStreamerFilter;

/**
 * PZF pixel types (`streamer_options_set_filter_pzf`).
 */
typedef enum PymeStreamerPzfFormat {
    /**
     * uint8.
     */
    STREAMER_PZF_UINT8 = 0,
    /**
     * uint16 (sCMOS cameras).
     */
    STREAMER_PZF_UINT16 = 1,
    /**
     * float32.
     */
    STREAMER_PZF_FLOAT32 = 2
} PymeStreamerPzfFormat;

/**
 * PZF compressions (`streamer_options_set_filter_pzf`).
 */
typedef enum PymeStreamerPzfCompression {
    /**
     * None.
     */
    STREAMER_PZF_RAW = 0,
    /**
     * One Huffman block (pymecompress-compatible).
     */
    STREAMER_PZF_HUFFMAN = 1,
    /**
     * Huffman-coded chunks, coded in parallel.
     */
    STREAMER_PZF_HUFFMAN_CHUNKED = 2
} PymeStreamerPzfCompression;

/**
 * PZF quantizations (`streamer_options_set_filter_pzf`).
 */
typedef enum PymeStreamerPzfQuantization {
    /**
     * None (lossless).
     */
    STREAMER_PZF_QUANT_NONE = 0,
    /**
     * Square root, uint16 only (within photon shot noise).
     */
    STREAMER_PZF_QUANT_SQRT = 1
} PymeStreamerPzfQuantization;

/**
 * The state of one server of a streamer (or of a stream's server).
 */
typedef enum PymeStreamerServerState {
    /**
     * Connected and taking files.
     */
    STREAMER_SERVER_UP = 0,
    /**
     * Not connected: the connection was lost and the link is reconnecting;
     * no attempt has failed yet. Puts go to other servers (failover).
     */
    STREAMER_SERVER_CONNECTING = 1,
    /**
     * Connected, but out of the rotation for a while after its server kept
     * answering 5xx (or 507: its disk is full).
     */
    STREAMER_SERVER_RESTING = 2,
    /**
     * Not connected, and the last attempt to connect failed (unreachable,
     * or its name could not be resolved for now): the library tries again
     * with the reconnect backoff until the streamer is closed. Also the state
     * of a server that could not be reached when the streamer was created.
     */
    STREAMER_SERVER_DOWN = 3
} PymeStreamerServerState;

/**
 * A persistent pipelined connection to one data server.
 */
typedef struct PymeStream PymeStream;

/**
 * Streams files to a cluster of data servers, one persistent pipelined
 * connection per server.
 */
typedef struct PymeStreamer PymeStreamer;

/**
 * The output buffer of a filter callback. Valid only during that call.
 */
typedef struct PymeStreamerBuffer PymeStreamerBuffer;

/**
 * Settings for a `Streamer` or a `Stream`. Not thread-safe: fill it from one
 * thread. One options object may create any number of handles; each handle
 * copies what it needs, so the options may be freed right after `streamer_new`.
 */
typedef struct PymeStreamerOptions PymeStreamerOptions;

/**
 * Chooses the server for a file: returns an index in `0..n_servers`.
 *
 * - Thread: the thread that calls `streamer_put` / `streamer_put_nocopy`,
 *   inside that call. Calls overlap when several threads put at once.
 * - Pointers: `name` is valid only during the call.
 * - `index` is the index given to put (negative: none). A result
 *   `>= n_servers` fails that put with `STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE`.
 * - `n_servers` is the number of servers now: with live membership
 *   (`streamer_options_set_discovery_period_ms`) it grows during the run as
 *   servers join (indices never change), so compute with it on every call.
 * - May call: the same functions as a completion callback (see
 *   `PymeStreamerCompletionFn`), though a put from here is rarely useful.
 * - The choice is where the file goes unless, with failover on (the
 *   default), that server cannot take it soon: down, resting after 5xx
 *   answers, or its queue full and no answer for 50 ms ("passed over").
 *   Then the file goes to another live server with room and the function
 *   is not called again. Turn failover off, or use `streamer_put_stream`,
 *   where the choice must hold whatever happens.
 */
typedef size_t (*PymeStreamerDistributionFn)(void *user_data,
                                             size_t n_servers,
                                             int64_t index,
                                             const char *name);

/**
 * Transforms a file's bytes before they are sent: append the output to `out`
 * with `streamer_buffer_append` (it arrives empty). Return 0 on success; any
 * other value fails that file with `STREAMER_ERR_FILTER` (nothing is sent for it).
 *
 * - Thread: the sender thread of the file's server. Calls for different
 *   servers overlap; calls for one server do not.
 * - Pointers: `name`, `data` and `out` are valid only during the call.
 * - May call: the same functions as a completion callback (see
 *   `PymeStreamerCompletionFn`). A slow filter slows its server only.
 */
typedef int32_t (*PymeStreamerFilterFn)(void *user_data,
                                        const char *name,
                                        const uint8_t *data,
                                        size_t len,
                                        struct PymeStreamerBuffer *out);

/**
 * Called exactly once for every file a put accepted, when its outcome is known
 * (except after a bounded close reached its limit: see `streamer_close_timeout`).
 *
 * `status` is `STREAMER_OK` when the server acknowledged the file, else the
 * reason (`STREAMER_ERR_HTTP`, `STREAMER_ERR_CONNECTION_LOST`,
 * `STREAMER_ERR_FILTER`...). `http_status` is the server's HTTP status, or 0
 * when there was no answer. `bytes` is the size given to put. `server_index`
 * is the server the file was last sent to, or `STREAMER_NO_SERVER` (`SIZE_MAX`)
 * for a file that failed in the spill folder without being sent.
 *
 * - Thread: a library thread (the receiver or sender of the file's server),
 *   or the thread calling close for files that end during close. Calls for
 *   different servers overlap; calls for one server do not.
 * - Pointers: `name` is valid only during the call.
 * - It should return quickly: it holds up the answers of its server.
 * - May call (re-entrancy contract, tested): `*_stats`, `*_last_error` (it
 *   gives this file's failure message), `streamer_status_str`,
 *   `streamer_version`, `streamer_n_servers`, `streamer_server_state`,
 *   `streamer_server_stats` (this file already counted), and puts, which never wait
 *   there: a full queue returns `STREAMER_ERR_QUEUE_FULL` at once. `*_flush`,
 *   `*_close`, `*_close_stats`, `*_close_timeout` and `stream_finalize` of any
 *   handle return `STREAMER_ERR_IN_CALLBACK` at once and do nothing (they
 *   would wait for this very callback); the handle stays valid.
 * - Must not: throw a C++ exception or longjmp out of the call.
 */
typedef void (*PymeStreamerCompletionFn)(void *user_data,
                                         const char *name,
                                         size_t server_index,
                                         int32_t status,
                                         int32_t http_status,
                                         uint64_t bytes);

/**
 * Called on every change of a server's state, with its index and its new
 * state (a `PymeStreamerServerState`); also once, at start, for every server
 * that could not be reached when the streamer was created
 * (`STREAMER_SERVER_DOWN`). Before its first call a server is up. With live
 * membership (`streamer_options_set_discovery_period_ms`), a server that
 * joins during the run has the next index and its first call says
 * `STREAMER_SERVER_UP`; one that discovery no longer finds is reported
 * `STREAMER_SERVER_DOWN`.
 *
 * - Thread: a library thread (the link thread of that server, its
 *   receiver, or the discovery thread that marked it down). Calls for one server never overlap and come in the order of
 *   the changes; calls for different servers may overlap.
 * - It should return quickly: it holds up its server's thread.
 * - May call: the same functions as a completion callback (see
 *   `PymeStreamerCompletionFn`), `streamer_server_state` included; a put
 *   never waits there, and `*_flush`, `*_close`... return
 *   `STREAMER_ERR_IN_CALLBACK`.
 * - No call starts after a bounded close reached its limit; every call has
 *   returned when `streamer_close` returns.
 * - Must not: throw a C++ exception or longjmp out of the call.
 */
typedef void (*PymeStreamerServerStateFn)(void *user_data, size_t server_index, int32_t state);

/**
 * The counters of one server of a streamer (`streamer_server_stats`), for
 * programs that draw their own view of the cluster. Pass
 * `sizeof(PymeStreamerServerStats)` with it; new fields are only ever
 * appended. Every field is 64 bits (a LabVIEW cluster: one U64, one I64,
 * then U64s). Each counter is exact, but a reading is not one snapshot: two
 * counters may be read a file apart while files move; after
 * `streamer_flush` they agree with `PymeStreamerStats`.
 */
typedef struct PymeStreamerServerStats {
    /**
     * Written by the library: how many bytes of this struct it filled (its
     * own `sizeof(PymeStreamerServerStats)`, or the caller's if smaller).
     */
    uint64_t size;
    /**
     * The server's state now: a `PymeStreamerServerState` (as
     * `streamer_server_state` reads it).
     */
    int64_t state;
    /**
     * Files this server acknowledged (2xx, or 405 for a re-sent file whose
     * stored bytes were found equal).
     */
    uint64_t files_acknowledged;
    /**
     * Bytes (as given to put) of the files this server acknowledged.
     */
    uint64_t bytes_acknowledged;
    /**
     * Files whose final outcome was a failure given by this server (an
     * error answer, a lost connection with nowhere to move the file, a
     * filter error). A file moved away and failed elsewhere counts on the
     * other server; a file failed in the spill folder counts on none.
     */
    uint64_t files_failed;
    /**
     * Bytes (as given to put) of the files counted in `files_failed`.
     */
    uint64_t bytes_failed;
    /**
     * Files waiting in this server's queue now, not yet sent.
     */
    uint64_t queue_files;
    /**
     * Bytes (as given to put) waiting in this server's queue now.
     */
    uint64_t queue_bytes;
    /**
     * Files sent to this server and waiting for its answer now.
     */
    uint64_t in_flight_files;
    /**
     * Bytes (as given to put) of the files in flight now.
     */
    uint64_t in_flight_bytes;
    /**
     * Requests written to this server's connections (a file sent again
     * counts again).
     */
    uint64_t files_sent;
    /**
     * Body bytes written to this server's connections (after the filter).
     */
    uint64_t bytes_sent;
    /**
     * Connections to this server re-established after one ended.
     */
    uint64_t reconnects;
    /**
     * Files sent to this server again after it answered 5xx.
     */
    uint64_t retries;
    /**
     * Files this server handed to another server: its connection failed
     * (failover), or it kept answering 5xx after its retries.
     */
    uint64_t moved_away;
} PymeStreamerServerStats;

/**
 * The statistics of a streamer or stream: counters since it was created, and
 * the queue depths now. Pass `sizeof(PymeStreamerStats)` with it to every
 * stats call; new fields are only ever appended.
 */
typedef struct PymeStreamerStats {
    /**
     * Written by the library: how many bytes of this struct it filled (its
     * own `sizeof(PymeStreamerStats)`, or the caller's if smaller).
     */
    uint64_t size;
    /**
     * Files accepted by put.
     */
    uint64_t files_queued;
    /**
     * Files whose request was written to a connection.
     */
    uint64_t files_sent;
    /**
     * Files acknowledged (2xx) by a server.
     */
    uint64_t files_acknowledged;
    /**
     * Files that failed (each had a completion with a non-OK status).
     */
    uint64_t files_failed;
    /**
     * Bytes accepted by put (before any filter).
     */
    uint64_t bytes_queued;
    /**
     * Body bytes written to connections (after the filter).
     */
    uint64_t bytes_sent;
    /**
     * Bytes (as given to put) of the acknowledged files.
     */
    uint64_t bytes_acknowledged;
    /**
     * Files waiting in the queues now, not yet sent.
     */
    uint64_t queue_files;
    /**
     * Bytes waiting in the queues now, not yet sent.
     */
    uint64_t queue_bytes;
    /**
     * Files sent and waiting for their answer now.
     */
    uint64_t in_flight_files;
    /**
     * Files moved to another server after their server's connection failed.
     */
    uint64_t rerouted;
    /**
     * Connections re-established after a failure.
     */
    uint64_t reconnects;
    /**
     * Files sent again after a 5xx answer.
     */
    uint64_t retries;
    /**
     * Re-sent files a server answered 405 whose stored bytes were read back
     * and found equal to the file (they had landed before a failure); counted
     * in `files_acknowledged` too.
     */
    uint64_t acknowledged_already;
    /**
     * Puts refused with `STREAMER_ERR_QUEUE_FULL`.
     */
    uint64_t dropped;
    /**
     * Files waiting in the spill folder now.
     */
    uint64_t spilled;
    /**
     * Files sent again after a connection failed while they were in flight:
     * each may also have been stored by the first server, so after a failover
     * a file can exist on two servers (at-least-once storage; still exactly
     * one outcome per put). Added after `spilled`: read it only when `size`
     * says it was written.
     */
    uint64_t resent_maybe_stored;
} PymeStreamerStats;

/**
 * Gives caller-owned bytes back (`streamer_put_nocopy`): called exactly once,
 * with the `data` and `len` given to put, when the library no longer needs them.
 *
 * - Thread: a library thread after the file's outcome (possibly just after
 *   its completion callback, and possibly after `streamer_flush` returned);
 *   the thread calling put, before put returns, when the put fails; or the
 *   thread calling close, for files given up by a bounded close.
 * - Every release has happened when `streamer_close` returns (and when
 *   `streamer_close_timeout` returns without `STREAMER_ERR_CLOSE_DETACHED`).
 * - May call: the same functions as a completion callback.
 */
typedef void (*PymeStreamerReleaseFn)(void *user_data, const uint8_t *data, size_t len);

/**
 * Appends `len` bytes at `data` to a filter's output buffer.
 * Consumes nothing: the bytes are copied.
 *
 * # Safety
 * `out` is the buffer passed to the running filter callback; `data` points to
 * `len` readable bytes (it may be NULL when `len` is 0).
 */
int32_t streamer_buffer_append(struct PymeStreamerBuffer *out, const uint8_t *data, size_t len);

/**
 * Reserves room for `additional` more bytes in a filter's output buffer, so a
 * filter that knows its output size appends without reallocation.
 * Consumes nothing.
 *
 * # Safety
 * `out` is the buffer passed to the running filter callback.
 */
int32_t streamer_buffer_reserve(struct PymeStreamerBuffer *out, size_t additional);

/**
 * The number of bytes in a filter's output buffer so far (0 for NULL).
 * Consumes nothing.
 *
 * # Safety
 * `out` is NULL or the buffer passed to the running filter callback.
 */
size_t streamer_buffer_len(const struct PymeStreamerBuffer *out);

/**
 * PYME's round-robin policy as a plain function: `index % n_servers` for
 * `index >= 0`, a random server for `index < 0`; 0 when `n_servers` is 0.
 * Usable from a distribution callback that wants round-robin for some files.
 * Consumes nothing.
 */
size_t distribution_function_round_robin(size_t n_servers, int64_t index);

/**
 * Counts the live data servers of the cluster named `serverfilter` (as
 * PYME's `n_cluster_servers`), looking over mDNS (multicast on the network,
 * 2 s) and in the local registry. `*out` is written on success; finding none
 * is `STREAMER_ERR_DISCOVERY`.
 * Consumes nothing.
 *
 * # Safety
 * `serverfilter` is NULL or a NUL-terminated string; `out` is NULL or valid.
 */
int32_t n_cluster_servers(const char *serverfilter, size_t *out);

/**
 * Creates options with the defaults: no servers, round-robin distribution, no
 * filter, no completion callback, 256 files / 256 MiB queued per server, a put
 * that waits for room as long as it takes, 5 s connect and 30 s response timeouts.
 * Consumes nothing; the new handle belongs to the caller.
 *
 * # Safety
 * `out` is NULL or a valid pointer; on success `*out` is a new handle to free
 * with `streamer_options_free`.
 */
int32_t streamer_options_new(struct PymeStreamerOptions **out);

/**
 * Frees options. NULL: does nothing.
 * Consumes the options handle.
 *
 * # Safety
 * `options` is NULL or a handle from `streamer_options_new`, not used afterwards.
 */
void streamer_options_free(struct PymeStreamerOptions *options);

/**
 * Adds a data server. Servers are numbered 0, 1, ... in the order added; that
 * number is the server index of distributions, `streamer_put_stream` and the
 * completion callback. `host` is a name or an IP address (IPv6 without brackets
 * is accepted); `port` must not be 0.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle; `host` is NULL or a NUL-terminated string.
 */
int32_t streamer_options_add_server(struct PymeStreamerOptions *options,
                                    const char *host,
                                    uint16_t port);

/**
 * Chooses the server of each file with a C callback (see
 * `PymeStreamerDistributionFn`). `user_data` is passed back to every call.
 * Consumes nothing: the options keep `fn` and `user_data` (borrowed, not owned).
 *
 * # Safety
 * `options` is NULL or a valid handle; `fn` follows the `PymeStreamerDistributionFn`
 * contract and, with `user_data`, stays usable until every handle created from
 * these options is closed.
 */
int32_t streamer_options_set_distribution(struct PymeStreamerOptions *options,
                                          PymeStreamerDistributionFn fn,
                                          void *user_data);

/**
 * Chooses a built-in distribution: one of `STREAMER_DISTRIBUTION_*`. No
 * callback needed (for LabVIEW and other hosts without function pointers).
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_distribution_kind(struct PymeStreamerOptions *options, int32_t kind);

/**
 * Where round-robin starts: the file of index `i` goes to server
 * `(i + start) % n` (`start` 0: server `i % n`, exactly as PYME's
 * `distribution_function_round_robin`). A negative `start` (the default)
 * makes each streamer draw its own start at random when it is created, so
 * that cameras triggered together do not send frame `i` to the same server
 * at the same moment. Applies to `STREAMER_DISTRIBUTION_ROUND_ROBIN` (the
 * default) and to the round-robin tie-break of
 * `STREAMER_DISTRIBUTION_LEAST_LOADED`; a distribution function set with
 * `streamer_options_set_distribution` gets the caller's index unchanged.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_round_robin_start(struct PymeStreamerOptions *options, int64_t start);

/**
 * Sends every file to server `server` (`STREAMER_DISTRIBUTION_FIXED`). A server
 * index beyond the servers makes every put fail with
 * `STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE`.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_fixed_server(struct PymeStreamerOptions *options, size_t server);

/**
 * Runs a C filter on every file before it is sent (see `PymeStreamerFilterFn`).
 * Replaces any filter set before.
 * Consumes nothing: the options keep `fn` and `user_data` (borrowed, not owned).
 *
 * # Safety
 * `options` is NULL or a valid handle; `fn` follows the `PymeStreamerFilterFn`
 * contract and, with `user_data`, stays usable until every handle created from
 * these options is closed.
 */
int32_t streamer_options_set_filter(struct PymeStreamerOptions *options,
                                    PymeStreamerFilterFn fn,
                                    void *user_data);

/**
 * Chooses a built-in filter: `STREAMER_FILTER_IDENTITY` (send the bytes
 * unchanged; removes any filter set before). Built-in filters with parameters
 * have their own setters: `streamer_options_set_filter_pzf`,
 * `streamer_options_set_filter_gzip`.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_filter_kind(struct PymeStreamerOptions *options, int32_t kind);

/**
 * Encodes every file as a PZF frame (PYME's one-frame-per-file format) on
 * the library's sender threads, without a callback: each put's `data` is one
 * raw little-endian frame of `rows` x `cols` (x `depth`, 1 for 2-D) pixels in
 * C (row-major) order, and its index is the frame number. (The PZF header
 * calls the first dimension Width: it holds `rows`.)
 * `data_format`: `STREAMER_PZF_UINT8`, `_UINT16` or `_FLOAT32`;
 * `compression`: `STREAMER_PZF_RAW`, `_HUFFMAN` or `_HUFFMAN_CHUNKED`;
 * `quantization`: `STREAMER_PZF_QUANT_NONE` or `_SQRT` (uint16 only, with
 * `quant_offset` (the camera's dark level) and `quant_scale` > 0). Invalid
 * parameters are `STREAMER_ERR_INVALID_ARGUMENT` here; a put whose size does
 * not match fails that file with `STREAMER_ERR_FILTER`, never a corrupt file.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_filter_pzf(struct PymeStreamerOptions *options,
                                        int32_t data_format,
                                        uint32_t rows,
                                        uint32_t cols,
                                        uint32_t depth,
                                        int32_t compression,
                                        int32_t quantization,
                                        float quant_offset,
                                        float quant_scale);

/**
 * Encodes every file as a PZF frame of a camera image as cameras and
 * Micro-Manager give it: `width` pixels per line (x fastest), `height` lines,
 * little-endian. The frame is stored as PYME indexes images, `[x, y]`: PZF
 * DimOrder `F` with the first dimension (Width) `width`, so PYME's reader
 * (`PZFFormat.loads`) returns an array of shape (`width`, `height`, 1) whose
 * element `[x, y]` is pixel `x` of line `y`; the bytes are not reordered.
 * The index of each put is the frame number. `data_format` and `compression`
 * as `streamer_options_set_filter_pzf`; no quantization.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_filter_pzf_image(struct PymeStreamerOptions *options,
                                              int32_t data_format,
                                              uint32_t width,
                                              uint32_t height,
                                              int32_t compression);

/**
 * Compresses every file with gzip for the transport (`Content-Encoding:
 * gzip`; PYME servers store the decoded bytes), at `level` 1 (fast) to 9
 * (small). For non-image files; use the PZF filter for frames.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_filter_gzip(struct PymeStreamerOptions *options, int32_t level);

/**
 * Calls `fn` once with the outcome of every file (see `PymeStreamerCompletionFn`).
 * Consumes nothing: the options keep `fn` and `user_data` (borrowed, not owned).
 *
 * # Safety
 * `options` is NULL or a valid handle; `fn` follows the `PymeStreamerCompletionFn`
 * contract and, with `user_data`, stays usable until every handle created from
 * these options is closed.
 */
int32_t streamer_options_set_completion(struct PymeStreamerOptions *options,
                                        PymeStreamerCompletionFn fn,
                                        void *user_data);

/**
 * Bounds what each server may hold: files and bytes accepted by put and not yet
 * answered. A put waits for room (see `streamer_options_set_put_timeout`). A
 * single file larger than `max_bytes` still goes through, alone. Both must be > 0.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_queue_limits(struct PymeStreamerOptions *options,
                                          size_t max_files,
                                          uint64_t max_bytes);

/**
 * The memory budget: all the bytes the streamer holds for files at once,
 * whatever the number of servers (default 1 GiB, `1073741824`): files
 * queued or waiting for their answer on every server (files moved by
 * failover included), the copying put's free buffers, filter output while
 * it is sent. The queue limits of each server apply inside it. A put that
 * finds the budget full waits as for a full queue (the put timeout) and then
 * fails with `STREAMER_ERR_QUEUE_FULL`. A file larger than the whole budget
 * is taken only while the streamer holds no other file (it goes alone), so
 * `bytes` 0 or 1 mean one file at a time.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_memory_limit(struct PymeStreamerOptions *options, uint64_t bytes);

/**
 * How long connecting to a server may take, and how long a server may stay
 * silent while answers are due before its connection is failed. Both in
 * milliseconds, both > 0.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_timeouts(struct PymeStreamerOptions *options,
                                      uint32_t connect_ms,
                                      uint32_t response_ms);

/**
 * How long a put waits for room in a full queue before it fails with
 * `STREAMER_ERR_QUEUE_FULL`: `ms < 0` waits as long as it takes (the
 * default), `0` fails at once, `ms > 0` waits up to that many milliseconds.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_put_timeout(struct PymeStreamerOptions *options, int64_t ms);

/**
 * Failover (on by default): when a server's connection fails, its queued and
 * unanswered files move to the live servers. `enabled == 0`: they fail with
 * `STREAMER_ERR_CONNECTION_LOST` instead (a strict placement policy).
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_failover(struct PymeStreamerOptions *options, int32_t enabled);

/**
 * `required != 0`: `streamer_new` fails with `STREAMER_ERR_CONNECT` (naming
 * the server in `streamer_options_last_error`) unless every server can be
 * reached. The default (0): a server that cannot be reached (refused, timed
 * out, or its name cannot be resolved for now) starts
 * `STREAMER_SERVER_DOWN` and is connected with the reconnect backoff, as
 * after an outage that began later. A host name that does not exist is an
 * error either way. A stream (`stream_new`) requires its server unless it
 * has a spill folder.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_require_all_servers(struct PymeStreamerOptions *options,
                                                 int32_t required);

/**
 * How many times a file answered 5xx is sent again before it fails (default 2).
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_max_retries(struct PymeStreamerOptions *options, uint32_t retries);

/**
 * How `streamer_put` hands a file to an idle sender thread. `interval_us > 0`
 * (the default is 1000): while files come close together (at most 4
 * intervals apart), an idle sender looks at its queue every `interval_us`
 * microseconds, at most 4 times, so a put makes no system call; a file may
 * wait that long before it is sent. Files further apart, or none: the sender
 * sleeps until a put wakes it, and an idle link never wakes. `0`: the sender
 * always sleeps until a put wakes it.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_sender_poll_us(struct PymeStreamerOptions *options,
                                            uint32_t interval_us);

/**
 * Rides through a whole-cluster outage (off by default): files that cannot be
 * delivered because no server is live are written below `folder` instead of
 * failing, and sent again, oldest first, when a server is back. Files still
 * there at close complete with `STREAMER_ERR_SPILLED` and are sent by a later
 * streamer given the same folder. A put that spills returns once the file's
 * data and every folder entry it needed are synced to disk. One streamer or
 * stream per folder: it holds the lock file `folder/.pyme-lock` while open
 * (released by its close, or by the death of its process; a forked child
 * does not keep it); `streamer_new` / `stream_new` on a folder in use, in
 * this process or another, fail with `STREAMER_ERR_SPILL_BUSY`.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle; `folder` is NULL or a NUL-terminated string.
 */
int32_t streamer_options_set_spill_dir(struct PymeStreamerOptions *options, const char *folder);

/**
 * Finds the servers of the cluster named `serverfilter` when the streamer is
 * created (PYME's way: every data server whose advertised name contains it,
 * over mDNS and the local registry, this computer's servers first), in
 * addition to any added with `streamer_options_add_server`. Finding none makes
 * `streamer_new` fail with `STREAMER_ERR_DISCOVERY`. `""` takes every server.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle; `serverfilter` is NULL or a NUL-terminated string.
 */
int32_t streamer_options_set_serverfilter(struct PymeStreamerOptions *options,
                                          const char *serverfilter);

/**
 * How long discovery listens for mDNS answers (default 2000 ms). Call after
 * `streamer_options_set_serverfilter`.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_discovery_timeout_ms(struct PymeStreamerOptions *options, uint32_t ms);

/**
 * Live membership: with a serverfilter, how often discovery runs again
 * during the acquisition, in milliseconds (default 10000; 0: only once, at
 * start). A server found that the streamer does not have yet joins it with
 * the next index (`streamer_n_servers` grows; indices never change); a
 * server found by discovery that two rounds in a row do not find is marked
 * down (`STREAMER_SERVER_DOWN`), takes no new file (its files move to live
 * servers) and does not reconnect until found again. Servers given by
 * address are never marked down by discovery. The server-state callback
 * hears of both: a joining server's first call says `STREAMER_SERVER_UP`.
 * Without a serverfilter it has no effect. May be called before or after
 * `streamer_options_set_serverfilter`.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_discovery_period_ms(struct PymeStreamerOptions *options,
                                                 uint32_t period_ms);

/**
 * Where discovery looks: `use_mdns` (multicast on the network) and the local
 * registry file `registry_path` (NULL: the default, `<temp dir>/_pyme-http.sqlite`,
 * also after another path or `""` was set; `""`: no registry). Call after
 * `streamer_options_set_serverfilter`. Hosts that cannot pass a NULL pointer
 * (LabVIEW) use `streamer_options_set_discovery_default_registry`.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle; `registry_path` is NULL or a NUL-terminated string.
 */
int32_t streamer_options_set_discovery_sources(struct PymeStreamerOptions *options,
                                               int32_t use_mdns,
                                               const char *registry_path);

/**
 * Where discovery looks: `use_mdns` (multicast on the network) and the default
 * local registry (`<temp dir>/_pyme-http.sqlite`): the same as
 * `streamer_options_set_discovery_sources` with a NULL `registry_path`, for hosts
 * that cannot pass a NULL pointer (a LabVIEW string is never NULL, and `""` means
 * no registry). Call after `streamer_options_set_serverfilter`.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle.
 */
int32_t streamer_options_set_discovery_default_registry(struct PymeStreamerOptions *options,
                                                        int32_t use_mdns);

/**
 * Copies the message of the last failure of a call on these options (or of
 * `streamer_new` / `stream_new` with them) into `buf`, as `streamer_last_error`.
 * Consumes nothing.
 *
 * # Safety
 * `options` is NULL or a valid handle; `buf` is NULL (with `buf_len` 0) or
 * points to `buf_len` writable bytes; `out_len` is NULL or valid.
 */
int32_t streamer_options_last_error(const struct PymeStreamerOptions *options,
                                    char *buf,
                                    size_t buf_len,
                                    size_t *out_len);

/**
 * Calls `fn` on every change of a server's state (see
 * `PymeStreamerServerStateFn`). `fn` NULL: no callback (the default).
 * Consumes nothing: the options keep `fn` and `user_data` (borrowed, not owned).
 *
 * # Safety
 * `options` is NULL or a valid handle; `fn` follows the
 * `PymeStreamerServerStateFn` contract and, with `user_data`, stays usable
 * until every handle created from these options is closed.
 */
int32_t streamer_options_set_server_callback(struct PymeStreamerOptions *options,
                                             PymeStreamerServerStateFn fn,
                                             void *user_data);

/**
 * Writes the state of server `index` now (a `PymeStreamerServerState`) to
 * `*state`. It takes no lock a put takes: poll it as often as needed, from
 * any thread (and from callbacks).
 * `STREAMER_ERR_INVALID_ARGUMENT` when `index >= streamer_n_servers`.
 * Consumes nothing.
 *
 * # Safety
 * `streamer` is NULL or a valid handle; `state` is NULL or a valid pointer.
 */
int32_t streamer_server_state(const struct PymeStreamer *streamer, size_t index, int32_t *state);

/**
 * Writes the state of the stream's server now (a `PymeStreamerServerState`)
 * to `*state`; as `streamer_server_state`.
 * Consumes nothing.
 *
 * # Safety
 * `stream` is NULL or a valid handle; `state` is NULL or a valid pointer.
 */
int32_t stream_server_state(const struct PymeStream *stream, int32_t *state);

/**
 * Writes the counters of server `index` now to `*out`, `stats_size` bytes
 * of it at most (pass `sizeof(PymeStreamerServerStats)`; see its `size`).
 * It takes no lock that a put takes: poll it as often as a UI needs, from
 * any thread and from callbacks (a completion callback sees its own file
 * counted). `STREAMER_ERR_INVALID_ARGUMENT` when `index >=
 * streamer_n_servers` or `stats_size < 8`; `*out` is written only on
 * success. Consumes nothing.
 *
 * # Safety
 * `streamer` is NULL or a valid handle; `out` is NULL or points to
 * `stats_size` writable bytes, aligned for `uint64_t`.
 */
int32_t streamer_server_stats(const struct PymeStreamer *streamer,
                              size_t index,
                              struct PymeStreamerServerStats *out,
                              size_t stats_size);

/**
 * A static, NUL-terminated English description of `status`, for any value
 * (unknown codes give "unknown status"). Never NULL; never free it. Consumes nothing.
 */
const char *streamer_status_str(int32_t status);

/**
 * The library version, `"MAJOR.MINOR.PATCH"` (static; equals
 * `PYME_STREAMING_VERSION` of the header the program was built with, unless it
 * runs against another build of the library).
 * Consumes nothing.
 */
const char *streamer_version(void);

/**
 * Connects to one server `host:port` with the queue limits, filter, completion
 * callback and timeouts of `options` (servers and distribution in `options` are
 * not used). A server that cannot be reached is an error
 * (`STREAMER_ERR_CONNECT`), as PYME's `Stream`, unless `options` has a spill
 * folder: the stream then opens with its server `STREAMER_SERVER_DOWN`,
 * spills what is put and sends it once the server can be reached. On
 * failure the message is kept on `options`. Consumes nothing.
 *
 * # Safety
 * `host` is NULL or a NUL-terminated string; `options` is NULL or a valid
 * handle; `out` is NULL or a valid pointer. On success `*out` is a new handle
 * to close with `stream_close`.
 */
int32_t stream_new(const char *host,
                   uint16_t port,
                   const struct PymeStreamerOptions *options,
                   struct PymeStream **out);

/**
 * Queues a copy of the bytes as file `name`, as `streamer_put` (consumes
 * nothing). `STREAMER_ERR_CLOSED` after `stream_finalize`, and, from inside a
 * callback, while `stream_finalize` is starting.
 *
 * # Safety
 * `stream` is NULL or a valid handle; `name` is NULL or a NUL-terminated
 * string; `data` points to `len` readable bytes (NULL allowed when `len` is 0).
 */
int32_t stream_put(struct PymeStream *stream, const char *name, const uint8_t *data, size_t len);

/**
 * Waits until every file accepted so far has its outcome, as `streamer_flush`.
 * `STREAMER_OK` at once after `stream_finalize`; `STREAMER_ERR_IN_CALLBACK`
 * at once from inside a callback.
 * Consumes nothing.
 *
 * # Safety
 * `stream` is NULL or a valid handle.
 */
int32_t stream_flush(struct PymeStream *stream, uint32_t timeout_ms);

/**
 * Ends the stream: after everything queued, sends the end-of-stream sentinel
 * (an empty file `sentinel_name` on a request that closes the connection),
 * waits for every answer and joins the library's threads. Waits for puts in
 * progress on other threads first. Does not consume the handle: later puts
 * return `STREAMER_ERR_CLOSED`, `stream_stats` gives the final statistics;
 * free it with `stream_close`. Returns `STREAMER_OK` when every file (the
 * sentinel included) was acknowledged, else `STREAMER_ERR_FILES_FAILED` (or
 * the reason the sentinel could not be queued). An invalid `sentinel_name`
 * leaves the stream open. A second finalize returns `STREAMER_ERR_CLOSED`.
 * From inside a callback: `STREAMER_ERR_IN_CALLBACK` at once, nothing done.
 * Completion callbacks may call `stream_stats` while it waits.
 *
 * # Safety
 * `stream` is NULL or a valid handle; `sentinel_name` is NULL or a
 * NUL-terminated string.
 */
int32_t stream_finalize(struct PymeStream *stream, const char *sentinel_name);

/**
 * Writes the statistics to `*out` (the final ones after `stream_finalize`),
 * at most `stats_size` bytes, as `streamer_stats`. Works from a completion
 * callback, also during `stream_finalize`.
 * Consumes nothing.
 *
 * # Safety
 * `stream` is NULL or a valid handle; `out` is NULL or points to `stats_size`
 * writable bytes.
 */
int32_t stream_stats(const struct PymeStream *stream,
                     struct PymeStreamerStats *out,
                     size_t stats_size);

/**
 * Copies the message of the last failure seen by the calling thread on this
 * stream, as `streamer_last_error` (per thread; `out_len` may be NULL).
 * Consumes nothing.
 *
 * # Safety
 * As `streamer_last_error`, with a `PymeStream` handle.
 */
int32_t stream_last_error(const struct PymeStream *stream,
                          char *buf,
                          size_t buf_len,
                          size_t *out_len);

/**
 * Consumes the handle: sends everything queued (no sentinel), waits for
 * every answer, joins the threads and frees it; after `stream_finalize` it
 * only frees. `STREAMER_OK` when every file was acknowledged, else
 * `STREAMER_ERR_FILES_FAILED`. NULL: does nothing, `STREAMER_OK`. From inside
 * a callback: `STREAMER_ERR_IN_CALLBACK`, and the handle is NOT consumed.
 *
 * # Safety
 * `stream` is NULL or a valid handle; no other call on it may run
 * concurrently or follow (unless it returned `STREAMER_ERR_IN_CALLBACK`).
 */
int32_t stream_close(struct PymeStream *stream);

/**
 * As `stream_close`, and writes the final statistics to `*out` whenever the
 * handle was closed (as `streamer_close_stats`). With `out` NULL (or
 * `stats_size` too small) the handle is not consumed and an error is returned.
 *
 * # Safety
 * As `stream_close`; `out` is NULL or points to `stats_size` writable bytes.
 */
int32_t stream_close_stats(struct PymeStream *stream,
                           struct PymeStreamerStats *out,
                           size_t stats_size);

/**
 * A close bounded in time, exactly as `streamer_close_timeout` (same limit,
 * margin, statuses and callback guarantees). Consumes the handle (except with
 * `STREAMER_ERR_IN_CALLBACK` or a `stats_size` too small); `out` may be NULL.
 *
 * # Safety
 * As `stream_close`; `out` is NULL or points to `stats_size` writable bytes.
 */
int32_t stream_close_timeout(struct PymeStream *stream,
                             uint32_t timeout_ms,
                             struct PymeStreamerStats *out,
                             size_t stats_size);

/**
 * Connects to every server of `options`. A server that cannot be reached
 * starts `STREAMER_SERVER_DOWN` and is connected with the reconnect backoff
 * (unless `streamer_options_set_require_all_servers`: then it is an error);
 * a malformed address or a host name that does not exist is an error at
 * once. On failure nothing stays open and the message is kept on `options`
 * (`streamer_options_last_error`). Consumes nothing: the options are copied
 * and may be freed or reused at once.
 *
 * # Safety
 * `options` is NULL or a valid handle; `out` is NULL or a valid pointer. On
 * success `*out` is a new handle to close with `streamer_close`.
 */
int32_t streamer_new(const struct PymeStreamerOptions *options, struct PymeStreamer **out);

/**
 * Queues a copy of `len` bytes at `data` as file `name` on the server the
 * distribution picks for (`name`, `index`); `index < 0` means no index. The
 * bytes are copied before it returns (consumes nothing). Waits while the
 * chosen queue is full (see `streamer_options_set_put_timeout`), except from
 * inside a callback, where a full queue gives `STREAMER_ERR_QUEUE_FULL` at
 * once. `STREAMER_OK`: the file will get exactly one completion. An error:
 * nothing was queued and no completion follows.
 *
 * # Safety
 * `streamer` is NULL or a valid handle; `name` is NULL or a NUL-terminated
 * string; `data` points to `len` readable bytes (NULL allowed when `len` is 0).
 */
int32_t streamer_put(struct PymeStreamer *streamer,
                     const char *name,
                     const uint8_t *data,
                     size_t len,
                     int64_t index);

/**
 * As `streamer_put`, without copying. Consumes the bytes: the library reads
 * `data` until it calls `release(release_user_data, data, len)`, exactly
 * once, when it no longer needs them (after the file's outcome, or before
 * this returns when the put fails, whatever the failure, even a NULL
 * argument). Until then the caller must neither change nor free the bytes.
 * `release` may be NULL when the bytes outlive the streamer (for example a
 * static buffer).
 *
 * # Safety
 * As `streamer_put`; `data` stays valid and unchanged until `release` is
 * called (or, without `release`, until `streamer_close` returns).
 */
int32_t streamer_put_nocopy(struct PymeStreamer *streamer,
                            const char *name,
                            const uint8_t *data,
                            size_t len,
                            int64_t index,
                            PymeStreamerReleaseFn release,
                            void *release_user_data);

/**
 * Queues a copy of the bytes as file `name` on server `stream_index` (the order
 * servers were added), bypassing the distribution. Otherwise as `streamer_put`.
 * Consumes nothing.
 *
 * # Safety
 * As `streamer_put`.
 */
int32_t streamer_put_stream(struct PymeStreamer *streamer,
                            size_t stream_index,
                            const char *name,
                            const uint8_t *data,
                            size_t len);

/**
 * The number of servers now (0 for NULL). With live membership
 * (`streamer_options_set_discovery_period_ms`) it grows when servers join
 * during the run; a server's index never changes.
 * Consumes nothing.
 *
 * # Safety
 * `streamer` is NULL or a valid handle.
 */
size_t streamer_n_servers(const struct PymeStreamer *streamer);

/**
 * Makes `count` buffers for copies of files of `file_bytes` bytes ready now,
 * so that the first `streamer_put`s of an acquisition do not fault in fresh
 * memory (a first fill costs many times a recycled one: docs/PERFORMANCE.md,
 * "the copying put"). Call it when the camera is armed, with the frame size and the
 * number of frames expected in flight at once. The buffers count against the
 * queue byte limit (all servers together) and files under 64 KiB are not
 * pooled, so it may prepare fewer: it writes how many to `*out_prepared`
 * (which may be NULL). Zero-copy puts need no buffers.
 * Consumes nothing.
 *
 * # Safety
 * `streamer` is NULL or a valid handle; `out_prepared` is NULL or valid.
 */
int32_t streamer_prepare_buffers(struct PymeStreamer *streamer,
                                 size_t file_bytes,
                                 size_t count,
                                 size_t *out_prepared);

/**
 * Waits until every file accepted so far has its outcome (its completion has
 * run), up to `timeout_ms` milliseconds (`STREAMER_WAIT_FOREVER`: no limit).
 * `STREAMER_ERR_TIMEOUT` when time ran out. Files that failed do not make it
 * fail: look at `streamer_stats`. With a spill folder it waits for spilled
 * files to be sent too, but returns `STREAMER_OK` as soon as the only files
 * left are spilled and every server is down or resting (they stay spilled:
 * `PymeStreamerStats.spilled`), so it never waits on a dead cluster.
 * `STREAMER_ERR_IN_CALLBACK` at once from inside a callback.
 * Consumes nothing.
 *
 * # Safety
 * `streamer` is NULL or a valid handle.
 */
int32_t streamer_flush(struct PymeStreamer *streamer, uint32_t timeout_ms);

/**
 * Writes the statistics now to `*out`, `stats_size` bytes of it at most
 * (pass `sizeof(PymeStreamerStats)`; see `PymeStreamerStats.size`). A
 * consistent snapshot: never more outcomes than files queued.
 * Consumes nothing.
 *
 * # Safety
 * `streamer` is NULL or a valid handle; `out` is NULL or points to
 * `stats_size` writable bytes.
 */
int32_t streamer_stats(const struct PymeStreamer *streamer,
                       struct PymeStreamerStats *out,
                       size_t stats_size);

/**
 * Copies the message of the last failure seen by the calling thread on this
 * handle (a call of this thread that failed, or, inside a completion
 * callback, that file's failure) into `buf`, NUL-terminated and truncated to
 * `buf_len - 1` bytes (at a UTF-8 character boundary), and writes its full
 * length (without the NUL) to `*out_len` unless `out_len` is NULL. An empty
 * string when nothing failed on this thread. `buf` may be NULL when
 * `buf_len` is 0, to ask for the length only. Messages are per thread, so
 * two threads never read each other's.
 * Consumes nothing.
 *
 * # Safety
 * `streamer` is NULL or a valid handle; `buf` is NULL (with `buf_len` 0) or
 * points to `buf_len` writable bytes; `out_len` is NULL or valid.
 */
int32_t streamer_last_error(const struct PymeStreamer *streamer,
                            char *buf,
                            size_t buf_len,
                            size_t *out_len);

/**
 * Consumes the handle: sends everything queued, waits for the answer to
 * every request, runs every completion and release callback, joins the
 * library's threads and frees the handle. `STREAMER_OK` when every file
 * accepted was acknowledged, else `STREAMER_ERR_FILES_FAILED`. NULL: does
 * nothing, `STREAMER_OK`. Never depends on a timeout to make progress beyond
 * the response timeout; for a limit, use `streamer_close_timeout`. With a
 * spill folder, spilled files are sent while a server takes them; the rest
 * complete with `STREAMER_ERR_SPILLED` (kept in the folder) once no server
 * has taken a file or a connection for one connect plus one response
 * timeout. From inside
 * a callback: `STREAMER_ERR_IN_CALLBACK`, and the handle is NOT consumed.
 *
 * # Safety
 * `streamer` is NULL or a valid handle; no other call on it may run
 * concurrently or follow (unless it returned `STREAMER_ERR_IN_CALLBACK`).
 */
int32_t streamer_close(struct PymeStreamer *streamer);

/**
 * As `streamer_close`, and writes the final statistics to `*out` (at most
 * `stats_size` bytes, as `streamer_stats`) whenever the handle was closed
 * (`STREAMER_OK` and `STREAMER_ERR_FILES_FAILED`: the close itself succeeded;
 * the status says whether any file was lost). With `out` NULL or a
 * `stats_size` too small, the handle is not consumed and
 * `STREAMER_ERR_NULL_ARGUMENT` / `STREAMER_ERR_INVALID_ARGUMENT` is returned.
 *
 * # Safety
 * As `streamer_close`; `out` is NULL or points to `stats_size` writable bytes.
 */
int32_t streamer_close_stats(struct PymeStreamer *streamer,
                             struct PymeStreamerStats *out,
                             size_t stats_size);

/**
 * A close bounded in time: as `streamer_close_stats`, but returns within
 * `timeout_ms` milliseconds plus `STREAMER_CLOSE_MARGIN_MS` (`STREAMER_WAIT_FOREVER`:
 * no limit). Consumes the handle (except with `STREAMER_ERR_IN_CALLBACK`, or
 * a `stats_size` too small). `out` may be NULL.
 *
 * Once `timeout_ms` has passed: no completion callback starts any more; the
 * files still pending are given up (counted in `files_failed`; with a spill
 * folder they are kept there instead); their release callbacks run on this
 * thread; the connections are shut and the threads joined.
 *
 * Returns `STREAMER_OK` / `STREAMER_ERR_FILES_FAILED` when everything ended
 * before the limit; `STREAMER_ERR_CLOSE_TIMEOUT` when files were given up
 * (every thread joined: no callback runs after it returns);
 * `STREAMER_ERR_CLOSE_DETACHED` when, at the margin, a library thread was
 * still inside a callback (or filter) that began before the limit: that
 * thread is left to end on its own, the callback's `user_data` must stay
 * valid until it returns, and no other callback starts.
 *
 * # Safety
 * As `streamer_close`; `out` is NULL or points to `stats_size` writable bytes.
 */
int32_t streamer_close_timeout(struct PymeStreamer *streamer,
                               uint32_t timeout_ms,
                               struct PymeStreamerStats *out,
                               size_t stats_size);

/*
 * The short type names of the first 0.1.0 builds (before the types took the
 * Pyme prefix), for programs written against them: define
 * PYME_STREAMING_SHORT_NAMES before including this header. Off by
 * default, because a C++ program with its own Stream or Streamer type would
 * otherwise compile against the wrong one.
 */
#ifdef PYME_STREAMING_SHORT_NAMES
typedef PymeStreamer Streamer;
typedef PymeStream Stream;
typedef PymeStreamerOptions StreamerOptions;
typedef PymeStreamerBuffer StreamerBuffer;
typedef PymeStreamerStats StreamerStats;
typedef PymeStreamerDistributionFn StreamerDistributionFn;
typedef PymeStreamerFilterFn StreamerFilterFn;
typedef PymeStreamerCompletionFn StreamerCompletionFn;
typedef PymeStreamerReleaseFn StreamerReleaseFn;
#endif

#ifdef __cplusplus
}
#endif

#endif /* PYME_STREAMING_H */
