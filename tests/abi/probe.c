/*
 * The C ABI of libpyme_streaming.so.0, as the header states it: generated from
 * include/pyme_streaming.h by tests/abi_probe.rs -- do not edit.
 * Regenerate after an intended change: scripts/abi.sh update (docs/ABI.md).
 * Compiled against the header by `cargo test --test abi_probe`: a fact that no
 * longer holds does not compile.
 */
#include <stddef.h>
#include <stdint.h>
#include <pyme_streaming.h>

#define PROBE_SOVERSION 0
#define PROBE_ASSERT(name, fact) typedef char probe_##name[(fact) ? 1 : -1]

/* struct PymeStreamerServerStats */
PROBE_ASSERT(sizeof_PymeStreamerServerStats, sizeof(PymeStreamerServerStats) == 120);
PROBE_ASSERT(offsetof_PymeStreamerServerStats_size, offsetof(PymeStreamerServerStats, size) == 0);
PROBE_ASSERT(type_PymeStreamerServerStats_size, sizeof(((PymeStreamerServerStats *)0)->size) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_state, offsetof(PymeStreamerServerStats, state) == 8);
PROBE_ASSERT(type_PymeStreamerServerStats_state, sizeof(((PymeStreamerServerStats *)0)->state) == sizeof(int64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_files_acknowledged, offsetof(PymeStreamerServerStats, files_acknowledged) == 16);
PROBE_ASSERT(type_PymeStreamerServerStats_files_acknowledged, sizeof(((PymeStreamerServerStats *)0)->files_acknowledged) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_bytes_acknowledged, offsetof(PymeStreamerServerStats, bytes_acknowledged) == 24);
PROBE_ASSERT(type_PymeStreamerServerStats_bytes_acknowledged, sizeof(((PymeStreamerServerStats *)0)->bytes_acknowledged) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_files_failed, offsetof(PymeStreamerServerStats, files_failed) == 32);
PROBE_ASSERT(type_PymeStreamerServerStats_files_failed, sizeof(((PymeStreamerServerStats *)0)->files_failed) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_bytes_failed, offsetof(PymeStreamerServerStats, bytes_failed) == 40);
PROBE_ASSERT(type_PymeStreamerServerStats_bytes_failed, sizeof(((PymeStreamerServerStats *)0)->bytes_failed) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_queue_files, offsetof(PymeStreamerServerStats, queue_files) == 48);
PROBE_ASSERT(type_PymeStreamerServerStats_queue_files, sizeof(((PymeStreamerServerStats *)0)->queue_files) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_queue_bytes, offsetof(PymeStreamerServerStats, queue_bytes) == 56);
PROBE_ASSERT(type_PymeStreamerServerStats_queue_bytes, sizeof(((PymeStreamerServerStats *)0)->queue_bytes) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_in_flight_files, offsetof(PymeStreamerServerStats, in_flight_files) == 64);
PROBE_ASSERT(type_PymeStreamerServerStats_in_flight_files, sizeof(((PymeStreamerServerStats *)0)->in_flight_files) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_in_flight_bytes, offsetof(PymeStreamerServerStats, in_flight_bytes) == 72);
PROBE_ASSERT(type_PymeStreamerServerStats_in_flight_bytes, sizeof(((PymeStreamerServerStats *)0)->in_flight_bytes) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_files_sent, offsetof(PymeStreamerServerStats, files_sent) == 80);
PROBE_ASSERT(type_PymeStreamerServerStats_files_sent, sizeof(((PymeStreamerServerStats *)0)->files_sent) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_bytes_sent, offsetof(PymeStreamerServerStats, bytes_sent) == 88);
PROBE_ASSERT(type_PymeStreamerServerStats_bytes_sent, sizeof(((PymeStreamerServerStats *)0)->bytes_sent) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_reconnects, offsetof(PymeStreamerServerStats, reconnects) == 96);
PROBE_ASSERT(type_PymeStreamerServerStats_reconnects, sizeof(((PymeStreamerServerStats *)0)->reconnects) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_retries, offsetof(PymeStreamerServerStats, retries) == 104);
PROBE_ASSERT(type_PymeStreamerServerStats_retries, sizeof(((PymeStreamerServerStats *)0)->retries) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerServerStats_moved_away, offsetof(PymeStreamerServerStats, moved_away) == 112);
PROBE_ASSERT(type_PymeStreamerServerStats_moved_away, sizeof(((PymeStreamerServerStats *)0)->moved_away) == sizeof(uint64_t));

/* struct PymeStreamerStats */
PROBE_ASSERT(sizeof_PymeStreamerStats, sizeof(PymeStreamerStats) == 144);
PROBE_ASSERT(offsetof_PymeStreamerStats_size, offsetof(PymeStreamerStats, size) == 0);
PROBE_ASSERT(type_PymeStreamerStats_size, sizeof(((PymeStreamerStats *)0)->size) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_files_queued, offsetof(PymeStreamerStats, files_queued) == 8);
PROBE_ASSERT(type_PymeStreamerStats_files_queued, sizeof(((PymeStreamerStats *)0)->files_queued) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_files_sent, offsetof(PymeStreamerStats, files_sent) == 16);
PROBE_ASSERT(type_PymeStreamerStats_files_sent, sizeof(((PymeStreamerStats *)0)->files_sent) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_files_acknowledged, offsetof(PymeStreamerStats, files_acknowledged) == 24);
PROBE_ASSERT(type_PymeStreamerStats_files_acknowledged, sizeof(((PymeStreamerStats *)0)->files_acknowledged) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_files_failed, offsetof(PymeStreamerStats, files_failed) == 32);
PROBE_ASSERT(type_PymeStreamerStats_files_failed, sizeof(((PymeStreamerStats *)0)->files_failed) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_bytes_queued, offsetof(PymeStreamerStats, bytes_queued) == 40);
PROBE_ASSERT(type_PymeStreamerStats_bytes_queued, sizeof(((PymeStreamerStats *)0)->bytes_queued) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_bytes_sent, offsetof(PymeStreamerStats, bytes_sent) == 48);
PROBE_ASSERT(type_PymeStreamerStats_bytes_sent, sizeof(((PymeStreamerStats *)0)->bytes_sent) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_bytes_acknowledged, offsetof(PymeStreamerStats, bytes_acknowledged) == 56);
PROBE_ASSERT(type_PymeStreamerStats_bytes_acknowledged, sizeof(((PymeStreamerStats *)0)->bytes_acknowledged) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_queue_files, offsetof(PymeStreamerStats, queue_files) == 64);
PROBE_ASSERT(type_PymeStreamerStats_queue_files, sizeof(((PymeStreamerStats *)0)->queue_files) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_queue_bytes, offsetof(PymeStreamerStats, queue_bytes) == 72);
PROBE_ASSERT(type_PymeStreamerStats_queue_bytes, sizeof(((PymeStreamerStats *)0)->queue_bytes) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_in_flight_files, offsetof(PymeStreamerStats, in_flight_files) == 80);
PROBE_ASSERT(type_PymeStreamerStats_in_flight_files, sizeof(((PymeStreamerStats *)0)->in_flight_files) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_rerouted, offsetof(PymeStreamerStats, rerouted) == 88);
PROBE_ASSERT(type_PymeStreamerStats_rerouted, sizeof(((PymeStreamerStats *)0)->rerouted) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_reconnects, offsetof(PymeStreamerStats, reconnects) == 96);
PROBE_ASSERT(type_PymeStreamerStats_reconnects, sizeof(((PymeStreamerStats *)0)->reconnects) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_retries, offsetof(PymeStreamerStats, retries) == 104);
PROBE_ASSERT(type_PymeStreamerStats_retries, sizeof(((PymeStreamerStats *)0)->retries) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_acknowledged_already, offsetof(PymeStreamerStats, acknowledged_already) == 112);
PROBE_ASSERT(type_PymeStreamerStats_acknowledged_already, sizeof(((PymeStreamerStats *)0)->acknowledged_already) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_dropped, offsetof(PymeStreamerStats, dropped) == 120);
PROBE_ASSERT(type_PymeStreamerStats_dropped, sizeof(((PymeStreamerStats *)0)->dropped) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_spilled, offsetof(PymeStreamerStats, spilled) == 128);
PROBE_ASSERT(type_PymeStreamerStats_spilled, sizeof(((PymeStreamerStats *)0)->spilled) == sizeof(uint64_t));
PROBE_ASSERT(offsetof_PymeStreamerStats_resent_maybe_stored, offsetof(PymeStreamerStats, resent_maybe_stored) == 136);
PROBE_ASSERT(type_PymeStreamerStats_resent_maybe_stored, sizeof(((PymeStreamerStats *)0)->resent_maybe_stored) == sizeof(uint64_t));

/* enum PymeStreamerStatus */
PROBE_ASSERT(STREAMER_OK, STREAMER_OK == 0);
PROBE_ASSERT(STREAMER_ERR_NULL_ARGUMENT, STREAMER_ERR_NULL_ARGUMENT == -1);
PROBE_ASSERT(STREAMER_ERR_INVALID_ARGUMENT, STREAMER_ERR_INVALID_ARGUMENT == -2);
PROBE_ASSERT(STREAMER_ERR_UTF8, STREAMER_ERR_UTF8 == -3);
PROBE_ASSERT(STREAMER_ERR_INVALID_NAME, STREAMER_ERR_INVALID_NAME == -4);
PROBE_ASSERT(STREAMER_ERR_NO_SERVERS, STREAMER_ERR_NO_SERVERS == -5);
PROBE_ASSERT(STREAMER_ERR_BAD_SERVER_ADDRESS, STREAMER_ERR_BAD_SERVER_ADDRESS == -6);
PROBE_ASSERT(STREAMER_ERR_CONNECT, STREAMER_ERR_CONNECT == -7);
PROBE_ASSERT(STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE, STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE == -8);
PROBE_ASSERT(STREAMER_ERR_NO_SUCH_STREAM, STREAMER_ERR_NO_SUCH_STREAM == -9);
PROBE_ASSERT(STREAMER_ERR_QUEUE_FULL, STREAMER_ERR_QUEUE_FULL == -10);
PROBE_ASSERT(STREAMER_ERR_CLOSED, STREAMER_ERR_CLOSED == -11);
PROBE_ASSERT(STREAMER_ERR_SERVER_DOWN, STREAMER_ERR_SERVER_DOWN == -12);
PROBE_ASSERT(STREAMER_ERR_FILTER, STREAMER_ERR_FILTER == -13);
PROBE_ASSERT(STREAMER_ERR_HTTP, STREAMER_ERR_HTTP == -14);
PROBE_ASSERT(STREAMER_ERR_CONNECTION_LOST, STREAMER_ERR_CONNECTION_LOST == -15);
PROBE_ASSERT(STREAMER_ERR_TIMEOUT, STREAMER_ERR_TIMEOUT == -16);
PROBE_ASSERT(STREAMER_ERR_FILES_FAILED, STREAMER_ERR_FILES_FAILED == -17);
PROBE_ASSERT(STREAMER_ERR_PANIC, STREAMER_ERR_PANIC == -18);
PROBE_ASSERT(STREAMER_ERR_UNSUPPORTED, STREAMER_ERR_UNSUPPORTED == -19);
PROBE_ASSERT(STREAMER_ERR_DISCOVERY, STREAMER_ERR_DISCOVERY == -20);
PROBE_ASSERT(STREAMER_ERR_SPILLED, STREAMER_ERR_SPILLED == -21);
PROBE_ASSERT(STREAMER_ERR_SPILL_FOLDER, STREAMER_ERR_SPILL_FOLDER == -22);
PROBE_ASSERT(STREAMER_ERR_IN_CALLBACK, STREAMER_ERR_IN_CALLBACK == -23);
PROBE_ASSERT(STREAMER_ERR_CLOSE_TIMEOUT, STREAMER_ERR_CLOSE_TIMEOUT == -24);
PROBE_ASSERT(STREAMER_ERR_CLOSE_DETACHED, STREAMER_ERR_CLOSE_DETACHED == -25);
PROBE_ASSERT(STREAMER_ERR_NAME_TAKEN, STREAMER_ERR_NAME_TAKEN == -26);
PROBE_ASSERT(STREAMER_ERR_SPILL_BUSY, STREAMER_ERR_SPILL_BUSY == -27);
PROBE_ASSERT(STREAMER_ERR_FORKED, STREAMER_ERR_FORKED == -28);
PROBE_ASSERT(STREAMER_ERR_LIMITS, STREAMER_ERR_LIMITS == -29);

/* enum PymeStreamerDistribution */
PROBE_ASSERT(STREAMER_DISTRIBUTION_ROUND_ROBIN, STREAMER_DISTRIBUTION_ROUND_ROBIN == 0);
PROBE_ASSERT(STREAMER_DISTRIBUTION_RANDOM, STREAMER_DISTRIBUTION_RANDOM == 1);
PROBE_ASSERT(STREAMER_DISTRIBUTION_FIXED, STREAMER_DISTRIBUTION_FIXED == 2);
PROBE_ASSERT(STREAMER_DISTRIBUTION_HASH, STREAMER_DISTRIBUTION_HASH == 3);
PROBE_ASSERT(STREAMER_DISTRIBUTION_LEAST_LOADED, STREAMER_DISTRIBUTION_LEAST_LOADED == 4);

/* enum PymeStreamerFilter */
PROBE_ASSERT(STREAMER_FILTER_IDENTITY, STREAMER_FILTER_IDENTITY == 0);

/* enum PymeStreamerPzfFormat */
PROBE_ASSERT(STREAMER_PZF_UINT8, STREAMER_PZF_UINT8 == 0);
PROBE_ASSERT(STREAMER_PZF_UINT16, STREAMER_PZF_UINT16 == 1);
PROBE_ASSERT(STREAMER_PZF_FLOAT32, STREAMER_PZF_FLOAT32 == 2);

/* enum PymeStreamerPzfCompression */
PROBE_ASSERT(STREAMER_PZF_RAW, STREAMER_PZF_RAW == 0);
PROBE_ASSERT(STREAMER_PZF_HUFFMAN, STREAMER_PZF_HUFFMAN == 1);
PROBE_ASSERT(STREAMER_PZF_HUFFMAN_CHUNKED, STREAMER_PZF_HUFFMAN_CHUNKED == 2);

/* enum PymeStreamerPzfQuantization */
PROBE_ASSERT(STREAMER_PZF_QUANT_NONE, STREAMER_PZF_QUANT_NONE == 0);
PROBE_ASSERT(STREAMER_PZF_QUANT_SQRT, STREAMER_PZF_QUANT_SQRT == 1);

/* enum PymeStreamerServerState */
PROBE_ASSERT(STREAMER_SERVER_UP, STREAMER_SERVER_UP == 0);
PROBE_ASSERT(STREAMER_SERVER_CONNECTING, STREAMER_SERVER_CONNECTING == 1);
PROBE_ASSERT(STREAMER_SERVER_RESTING, STREAMER_SERVER_RESTING == 2);
PROBE_ASSERT(STREAMER_SERVER_DOWN, STREAMER_SERVER_DOWN == 3);

/* constants */
PROBE_ASSERT(STREAMER_NO_SERVER, STREAMER_NO_SERVER == SIZE_MAX);
PROBE_ASSERT(STREAMER_WAIT_FOREVER, STREAMER_WAIT_FOREVER == 4294967295u);
PROBE_ASSERT(STREAMER_CLOSE_MARGIN_MS, STREAMER_CLOSE_MARGIN_MS == 500u);

/* callbacks: a pointer of the recorded type is one of the typedef */
extern PymeStreamerDistributionFn probe_PymeStreamerDistributionFn;
PymeStreamerDistributionFn probe_PymeStreamerDistributionFn = (size_t (*)(void *user_data, size_t n_servers, int64_t index, const char *name))0;
extern PymeStreamerFilterFn probe_PymeStreamerFilterFn;
PymeStreamerFilterFn probe_PymeStreamerFilterFn = (int32_t (*)(void *user_data, const char *name, const uint8_t *data, size_t len, struct PymeStreamerBuffer *out))0;
extern PymeStreamerCompletionFn probe_PymeStreamerCompletionFn;
PymeStreamerCompletionFn probe_PymeStreamerCompletionFn = (void (*)(void *user_data, const char *name, size_t server_index, int32_t status, int32_t http_status, uint64_t bytes))0;
extern PymeStreamerServerStateFn probe_PymeStreamerServerStateFn;
PymeStreamerServerStateFn probe_PymeStreamerServerStateFn = (void (*)(void *user_data, size_t server_index, int32_t state))0;
extern PymeStreamerReleaseFn probe_PymeStreamerReleaseFn;
PymeStreamerReleaseFn probe_PymeStreamerReleaseFn = (void (*)(void *user_data, const uint8_t *data, size_t len))0;

/* functions: a pointer of the recorded type takes each */
extern int32_t (*const probe_streamer_buffer_append)(struct PymeStreamerBuffer *, const uint8_t *, size_t);
int32_t (*const probe_streamer_buffer_append)(struct PymeStreamerBuffer *, const uint8_t *, size_t) = streamer_buffer_append;
extern int32_t (*const probe_streamer_buffer_reserve)(struct PymeStreamerBuffer *, size_t);
int32_t (*const probe_streamer_buffer_reserve)(struct PymeStreamerBuffer *, size_t) = streamer_buffer_reserve;
extern size_t (*const probe_streamer_buffer_len)(const struct PymeStreamerBuffer *);
size_t (*const probe_streamer_buffer_len)(const struct PymeStreamerBuffer *) = streamer_buffer_len;
extern size_t (*const probe_distribution_function_round_robin)(size_t, int64_t);
size_t (*const probe_distribution_function_round_robin)(size_t, int64_t) = distribution_function_round_robin;
extern int32_t (*const probe_n_cluster_servers)(const char *, size_t *);
int32_t (*const probe_n_cluster_servers)(const char *, size_t *) = n_cluster_servers;
extern int32_t (*const probe_streamer_options_new)(struct PymeStreamerOptions **);
int32_t (*const probe_streamer_options_new)(struct PymeStreamerOptions **) = streamer_options_new;
extern void (*const probe_streamer_options_free)(struct PymeStreamerOptions *);
void (*const probe_streamer_options_free)(struct PymeStreamerOptions *) = streamer_options_free;
extern int32_t (*const probe_streamer_options_add_server)(struct PymeStreamerOptions *, const char *, uint16_t);
int32_t (*const probe_streamer_options_add_server)(struct PymeStreamerOptions *, const char *, uint16_t) = streamer_options_add_server;
extern int32_t (*const probe_streamer_options_set_distribution)(struct PymeStreamerOptions *, PymeStreamerDistributionFn, void *);
int32_t (*const probe_streamer_options_set_distribution)(struct PymeStreamerOptions *, PymeStreamerDistributionFn, void *) = streamer_options_set_distribution;
extern int32_t (*const probe_streamer_options_set_distribution_kind)(struct PymeStreamerOptions *, int32_t);
int32_t (*const probe_streamer_options_set_distribution_kind)(struct PymeStreamerOptions *, int32_t) = streamer_options_set_distribution_kind;
extern int32_t (*const probe_streamer_options_set_round_robin_start)(struct PymeStreamerOptions *, int64_t);
int32_t (*const probe_streamer_options_set_round_robin_start)(struct PymeStreamerOptions *, int64_t) = streamer_options_set_round_robin_start;
extern int32_t (*const probe_streamer_options_set_fixed_server)(struct PymeStreamerOptions *, size_t);
int32_t (*const probe_streamer_options_set_fixed_server)(struct PymeStreamerOptions *, size_t) = streamer_options_set_fixed_server;
extern int32_t (*const probe_streamer_options_set_filter)(struct PymeStreamerOptions *, PymeStreamerFilterFn, void *);
int32_t (*const probe_streamer_options_set_filter)(struct PymeStreamerOptions *, PymeStreamerFilterFn, void *) = streamer_options_set_filter;
extern int32_t (*const probe_streamer_options_set_filter_kind)(struct PymeStreamerOptions *, int32_t);
int32_t (*const probe_streamer_options_set_filter_kind)(struct PymeStreamerOptions *, int32_t) = streamer_options_set_filter_kind;
extern int32_t (*const probe_streamer_options_set_filter_pzf)(struct PymeStreamerOptions *, int32_t, uint32_t, uint32_t, uint32_t, int32_t, int32_t, float, float);
int32_t (*const probe_streamer_options_set_filter_pzf)(struct PymeStreamerOptions *, int32_t, uint32_t, uint32_t, uint32_t, int32_t, int32_t, float, float) = streamer_options_set_filter_pzf;
extern int32_t (*const probe_streamer_options_set_filter_pzf_image)(struct PymeStreamerOptions *, int32_t, uint32_t, uint32_t, int32_t);
int32_t (*const probe_streamer_options_set_filter_pzf_image)(struct PymeStreamerOptions *, int32_t, uint32_t, uint32_t, int32_t) = streamer_options_set_filter_pzf_image;
extern int32_t (*const probe_streamer_options_set_filter_gzip)(struct PymeStreamerOptions *, int32_t);
int32_t (*const probe_streamer_options_set_filter_gzip)(struct PymeStreamerOptions *, int32_t) = streamer_options_set_filter_gzip;
extern int32_t (*const probe_streamer_options_set_completion)(struct PymeStreamerOptions *, PymeStreamerCompletionFn, void *);
int32_t (*const probe_streamer_options_set_completion)(struct PymeStreamerOptions *, PymeStreamerCompletionFn, void *) = streamer_options_set_completion;
extern int32_t (*const probe_streamer_options_set_queue_limits)(struct PymeStreamerOptions *, size_t, uint64_t);
int32_t (*const probe_streamer_options_set_queue_limits)(struct PymeStreamerOptions *, size_t, uint64_t) = streamer_options_set_queue_limits;
extern int32_t (*const probe_streamer_options_set_memory_limit)(struct PymeStreamerOptions *, uint64_t);
int32_t (*const probe_streamer_options_set_memory_limit)(struct PymeStreamerOptions *, uint64_t) = streamer_options_set_memory_limit;
extern int32_t (*const probe_streamer_options_set_timeouts)(struct PymeStreamerOptions *, uint32_t, uint32_t);
int32_t (*const probe_streamer_options_set_timeouts)(struct PymeStreamerOptions *, uint32_t, uint32_t) = streamer_options_set_timeouts;
extern int32_t (*const probe_streamer_options_set_put_timeout)(struct PymeStreamerOptions *, int64_t);
int32_t (*const probe_streamer_options_set_put_timeout)(struct PymeStreamerOptions *, int64_t) = streamer_options_set_put_timeout;
extern int32_t (*const probe_streamer_options_set_failover)(struct PymeStreamerOptions *, int32_t);
int32_t (*const probe_streamer_options_set_failover)(struct PymeStreamerOptions *, int32_t) = streamer_options_set_failover;
extern int32_t (*const probe_streamer_options_set_require_all_servers)(struct PymeStreamerOptions *, int32_t);
int32_t (*const probe_streamer_options_set_require_all_servers)(struct PymeStreamerOptions *, int32_t) = streamer_options_set_require_all_servers;
extern int32_t (*const probe_streamer_options_set_max_retries)(struct PymeStreamerOptions *, uint32_t);
int32_t (*const probe_streamer_options_set_max_retries)(struct PymeStreamerOptions *, uint32_t) = streamer_options_set_max_retries;
extern int32_t (*const probe_streamer_options_set_sender_poll_us)(struct PymeStreamerOptions *, uint32_t);
int32_t (*const probe_streamer_options_set_sender_poll_us)(struct PymeStreamerOptions *, uint32_t) = streamer_options_set_sender_poll_us;
extern int32_t (*const probe_streamer_options_set_spill_dir)(struct PymeStreamerOptions *, const char *);
int32_t (*const probe_streamer_options_set_spill_dir)(struct PymeStreamerOptions *, const char *) = streamer_options_set_spill_dir;
extern int32_t (*const probe_streamer_options_set_serverfilter)(struct PymeStreamerOptions *, const char *);
int32_t (*const probe_streamer_options_set_serverfilter)(struct PymeStreamerOptions *, const char *) = streamer_options_set_serverfilter;
extern int32_t (*const probe_streamer_options_set_discovery_timeout_ms)(struct PymeStreamerOptions *, uint32_t);
int32_t (*const probe_streamer_options_set_discovery_timeout_ms)(struct PymeStreamerOptions *, uint32_t) = streamer_options_set_discovery_timeout_ms;
extern int32_t (*const probe_streamer_options_set_discovery_period_ms)(struct PymeStreamerOptions *, uint32_t);
int32_t (*const probe_streamer_options_set_discovery_period_ms)(struct PymeStreamerOptions *, uint32_t) = streamer_options_set_discovery_period_ms;
extern int32_t (*const probe_streamer_options_set_discovery_sources)(struct PymeStreamerOptions *, int32_t, const char *);
int32_t (*const probe_streamer_options_set_discovery_sources)(struct PymeStreamerOptions *, int32_t, const char *) = streamer_options_set_discovery_sources;
extern int32_t (*const probe_streamer_options_set_discovery_default_registry)(struct PymeStreamerOptions *, int32_t);
int32_t (*const probe_streamer_options_set_discovery_default_registry)(struct PymeStreamerOptions *, int32_t) = streamer_options_set_discovery_default_registry;
extern int32_t (*const probe_streamer_options_last_error)(const struct PymeStreamerOptions *, char *, size_t, size_t *);
int32_t (*const probe_streamer_options_last_error)(const struct PymeStreamerOptions *, char *, size_t, size_t *) = streamer_options_last_error;
extern int32_t (*const probe_streamer_options_set_server_callback)(struct PymeStreamerOptions *, PymeStreamerServerStateFn, void *);
int32_t (*const probe_streamer_options_set_server_callback)(struct PymeStreamerOptions *, PymeStreamerServerStateFn, void *) = streamer_options_set_server_callback;
extern int32_t (*const probe_streamer_server_state)(const struct PymeStreamer *, size_t, int32_t *);
int32_t (*const probe_streamer_server_state)(const struct PymeStreamer *, size_t, int32_t *) = streamer_server_state;
extern int32_t (*const probe_stream_server_state)(const struct PymeStream *, int32_t *);
int32_t (*const probe_stream_server_state)(const struct PymeStream *, int32_t *) = stream_server_state;
extern int32_t (*const probe_streamer_server_stats)(const struct PymeStreamer *, size_t, struct PymeStreamerServerStats *, size_t);
int32_t (*const probe_streamer_server_stats)(const struct PymeStreamer *, size_t, struct PymeStreamerServerStats *, size_t) = streamer_server_stats;
extern const char * (*const probe_streamer_status_str)(int32_t);
const char * (*const probe_streamer_status_str)(int32_t) = streamer_status_str;
extern const char * (*const probe_streamer_version)(void);
const char * (*const probe_streamer_version)(void) = streamer_version;
extern int32_t (*const probe_stream_new)(const char *, uint16_t, const struct PymeStreamerOptions *, struct PymeStream **);
int32_t (*const probe_stream_new)(const char *, uint16_t, const struct PymeStreamerOptions *, struct PymeStream **) = stream_new;
extern int32_t (*const probe_stream_put)(struct PymeStream *, const char *, const uint8_t *, size_t);
int32_t (*const probe_stream_put)(struct PymeStream *, const char *, const uint8_t *, size_t) = stream_put;
extern int32_t (*const probe_stream_flush)(struct PymeStream *, uint32_t);
int32_t (*const probe_stream_flush)(struct PymeStream *, uint32_t) = stream_flush;
extern int32_t (*const probe_stream_finalize)(struct PymeStream *, const char *);
int32_t (*const probe_stream_finalize)(struct PymeStream *, const char *) = stream_finalize;
extern int32_t (*const probe_stream_stats)(const struct PymeStream *, struct PymeStreamerStats *, size_t);
int32_t (*const probe_stream_stats)(const struct PymeStream *, struct PymeStreamerStats *, size_t) = stream_stats;
extern int32_t (*const probe_stream_last_error)(const struct PymeStream *, char *, size_t, size_t *);
int32_t (*const probe_stream_last_error)(const struct PymeStream *, char *, size_t, size_t *) = stream_last_error;
extern int32_t (*const probe_stream_close)(struct PymeStream *);
int32_t (*const probe_stream_close)(struct PymeStream *) = stream_close;
extern int32_t (*const probe_stream_close_stats)(struct PymeStream *, struct PymeStreamerStats *, size_t);
int32_t (*const probe_stream_close_stats)(struct PymeStream *, struct PymeStreamerStats *, size_t) = stream_close_stats;
extern int32_t (*const probe_stream_close_timeout)(struct PymeStream *, uint32_t, struct PymeStreamerStats *, size_t);
int32_t (*const probe_stream_close_timeout)(struct PymeStream *, uint32_t, struct PymeStreamerStats *, size_t) = stream_close_timeout;
extern int32_t (*const probe_streamer_new)(const struct PymeStreamerOptions *, struct PymeStreamer **);
int32_t (*const probe_streamer_new)(const struct PymeStreamerOptions *, struct PymeStreamer **) = streamer_new;
extern int32_t (*const probe_streamer_put)(struct PymeStreamer *, const char *, const uint8_t *, size_t, int64_t);
int32_t (*const probe_streamer_put)(struct PymeStreamer *, const char *, const uint8_t *, size_t, int64_t) = streamer_put;
extern int32_t (*const probe_streamer_put_nocopy)(struct PymeStreamer *, const char *, const uint8_t *, size_t, int64_t, PymeStreamerReleaseFn, void *);
int32_t (*const probe_streamer_put_nocopy)(struct PymeStreamer *, const char *, const uint8_t *, size_t, int64_t, PymeStreamerReleaseFn, void *) = streamer_put_nocopy;
extern int32_t (*const probe_streamer_put_stream)(struct PymeStreamer *, size_t, const char *, const uint8_t *, size_t);
int32_t (*const probe_streamer_put_stream)(struct PymeStreamer *, size_t, const char *, const uint8_t *, size_t) = streamer_put_stream;
extern size_t (*const probe_streamer_n_servers)(const struct PymeStreamer *);
size_t (*const probe_streamer_n_servers)(const struct PymeStreamer *) = streamer_n_servers;
extern int32_t (*const probe_streamer_prepare_buffers)(struct PymeStreamer *, size_t, size_t, size_t *);
int32_t (*const probe_streamer_prepare_buffers)(struct PymeStreamer *, size_t, size_t, size_t *) = streamer_prepare_buffers;
extern int32_t (*const probe_streamer_flush)(struct PymeStreamer *, uint32_t);
int32_t (*const probe_streamer_flush)(struct PymeStreamer *, uint32_t) = streamer_flush;
extern int32_t (*const probe_streamer_stats)(const struct PymeStreamer *, struct PymeStreamerStats *, size_t);
int32_t (*const probe_streamer_stats)(const struct PymeStreamer *, struct PymeStreamerStats *, size_t) = streamer_stats;
extern int32_t (*const probe_streamer_last_error)(const struct PymeStreamer *, char *, size_t, size_t *);
int32_t (*const probe_streamer_last_error)(const struct PymeStreamer *, char *, size_t, size_t *) = streamer_last_error;
extern int32_t (*const probe_streamer_close)(struct PymeStreamer *);
int32_t (*const probe_streamer_close)(struct PymeStreamer *) = streamer_close;
extern int32_t (*const probe_streamer_close_stats)(struct PymeStreamer *, struct PymeStreamerStats *, size_t);
int32_t (*const probe_streamer_close_stats)(struct PymeStreamer *, struct PymeStreamerStats *, size_t) = streamer_close_stats;
extern int32_t (*const probe_streamer_close_timeout)(struct PymeStreamer *, uint32_t, struct PymeStreamerStats *, size_t);
int32_t (*const probe_streamer_close_timeout)(struct PymeStreamer *, uint32_t, struct PymeStreamerStats *, size_t) = streamer_close_timeout;
