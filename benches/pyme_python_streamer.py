"""Measure PYME's own Python streamer (PYME.IO.cluster_streaming.Streamer), the
reference pyme-stream replaces, against one `pyme-stream serve` on loopback.

Puts COUNT files of SIZE bytes named PREFIX/frameNNNNN.pzf (frame number as the
distribution index), closes the streamer, then counts the files the server
actually stored under ROOT/PREFIX (the reference can lose files at close).
The last line of stdout is one JSON object: files, stored, seconds, mb_per_s,
files_per_s (both from the stored files), put_latency_us (p50, p99, max).

Run by benches/end_to_end.sh when PYME imports; all traffic goes to 127.0.0.1.
"""

import argparse
import json
import os
import sys
import time
import types

# Keep every packet on loopback. Importing PYME's cluster directory starts mDNS
# discovery (multicast on every interface) unless Sphinx is loaded, and the
# Streamer's directory manager starts it again unless it is given a name server.
# The servers are listed explicitly here, so neither is needed: a stand-in Sphinx
# module stops the first, and a name server that refuses all use stops the second.
sys.modules.setdefault("sphinx", types.ModuleType("sphinx"))

from PYME.IO import clusterIO  # noqa: E402
from PYME.IO.cluster_directory import DirectoryInfoManager  # noqa: E402
from PYME.IO.cluster_streaming import (  # noqa: E402
    Streamer,
    distribution_function_round_robin,
)

SERVERFILTER = "pyme-stream-bench"


class NoNameServer:
    """A name server for explicitly listed servers: any lookup is a bug here."""

    def __getattr__(self, name):
        raise RuntimeError("no discovery in this benchmark (asked for %s)" % name)


def loopback_only_streamer(host, port):
    clusterIO._dir_managers[SERVERFILTER] = DirectoryInfoManager(
        ns=NoNameServer(), serverfilter=SERVERFILTER
    )
    return Streamer(
        serverfilter=SERVERFILTER,
        servers=[(host, port)],
        distribution_fcn=distribution_function_round_robin,
    )


def count_files(folder):
    """Files below `folder`, waiting until the number stops changing (the server
    may still be writing the last answers' files)."""
    last, stable_since = -1, time.monotonic()
    while True:
        found = sum(len(files) for _, _, files in os.walk(folder))
        now = time.monotonic()
        if found != last:
            last, stable_since = found, now
        elif now - stable_since > 1.0:
            return found
        time.sleep(0.1)


def percentile_us(sorted_ns, p):
    if not sorted_ns:
        return 0.0
    return sorted_ns[round((len(sorted_ns) - 1) * p)] / 1000.0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True, help="HOST:PORT of the data server")
    parser.add_argument(
        "--root",
        help="the server's storage root, to count the files stored; without it (a "
        "--discard server) the figures are of the files put",
    )
    parser.add_argument("--prefix", default="pybench")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=8 << 20)
    args = parser.parse_args()

    host, port = args.server.rsplit(":", 1)
    body = os.urandom(args.size)
    streamer = loopback_only_streamer(host, int(port))
    latencies_ns = []
    started = time.perf_counter()
    for index in range(args.count):
        name = "%s/frame%05d.pzf" % (args.prefix, index)
        put_started = time.perf_counter_ns()
        streamer.put(name, body, i=index)
        latencies_ns.append(time.perf_counter_ns() - put_started)
    streamer.close()
    seconds = time.perf_counter() - started

    if args.root is None:
        stored, landed = None, args.count
    else:
        stored = count_files(os.path.join(args.root, args.prefix))
        landed = stored
    latencies_ns.sort()
    report = {
        "files": args.count,
        "stored": stored,
        "lost": None if stored is None else args.count - stored,
        "size": args.size,
        "seconds": seconds,
        "mb_per_s": landed * args.size / 1e6 / seconds,
        "files_per_s": landed / seconds,
        "put_latency_us": {
            "p50": percentile_us(latencies_ns, 0.5),
            "p99": percentile_us(latencies_ns, 0.99),
            "max": percentile_us(latencies_ns, 1.0),
        },
    }
    print(
        "PYME Streamer: %s %d files, %.1f MB/s, %.0f files/s in %.2f s"
        % (
            "put" if stored is None else "stored %d of" % stored,
            args.count,
            report["mb_per_s"],
            report["files_per_s"],
            seconds,
        )
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
