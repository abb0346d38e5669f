"""PYME's own cluster spooling (PYME.IO.acquisition_backends.ClusterBackend)
through pyme_streaming after install(). Run by test_pyme.py inside a network
namespace whose only interface is lo (PYME's cluster modules may browse mDNS).

Usage: pyme_spool_scenario.py HOST:PORT N_FRAMES; prints one JSON line.
"""

import json
import sys
import types

# PYME starts mDNS discovery at import unless Sphinx is loaded: stop that.
sys.modules.setdefault("sphinx", types.ModuleType("sphinx"))

import numpy as np  # noqa: E402

import pyme_streaming  # noqa: E402
from PYME.IO import PZFFormat, cluster_streaming  # noqa: E402

server, n_frames = sys.argv[1], int(sys.argv[2])
outcomes = []
pyme_streaming.install(cluster_streaming, servers=[server], on_complete=outcomes.append)

from PYME.IO import acquisition_backends  # noqa: E402

backend = acquisition_backends.ClusterBackend(
    "pytest/series",
    serverfilter="pyme-streaming-pytest",
    compression_settings={"compression": PZFFormat.DATA_COMP_RAW},
)
streamer = backend._streamer
backend.initialise()
frames = [np.full((32, 16), n, dtype=np.uint16) + np.arange(16, dtype=np.uint16) for n in range(n_frames)]
for n, frame in enumerate(frames):
    backend.store_frame(n, frame)
backend.finalise()  # puts the final metadata and events, closes the streamer

print(json.dumps({
    "streamer_type": type(streamer).__module__ + "." + type(streamer).__name__,
    "stats": streamer.stats(),
    "outcomes_ok": sum(1 for o in outcomes if o.ok),
    "outcomes": len(outcomes),
}))
