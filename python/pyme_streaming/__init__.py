"""pyme_streaming: stream files and camera frames to a cluster of PYME data
servers, with the interface of PYME's ``PYME.IO.cluster_streaming``.

Switching PYME code over is one line::

    from pyme_streaming import Streamer          # instead of PYME.IO.cluster_streaming

or, without editing PYME at all::

    import pyme_streaming
    pyme_streaming.install()   # PYME.IO.cluster_streaming now uses this package

The work (connections, queues, failover, filters built in here) runs in Rust
threads without the GIL. ``put`` hands the memory of bytes, bytearray,
memoryview or C-contiguous numpy data to the library without copying it; the
object is kept alive (and its buffer exported, so it cannot be resized) until
the file has its outcome. Do not modify the data in place before then.
"""

import atexit as _atexit
import importlib as _importlib
import sys as _sys

from ._native import (  # noqa: F401
    ClosedError,
    ConnectError,
    DiscoveryError,
    Distribution,
    DistributionError,
    Filter,
    FlushTimeoutError,
    ForkedError,
    GzipFilter,
    InvalidNameError,
    LimitsError,
    NoSuchStreamError,
    Outcome,
    PzfFilter,
    QueueFullError,
    ServerDownError,
    SpillBusyError,
    SpillFolderError,
    Stream,
    Streamer,
    StreamingError,
    __version__,
    computer_name,
    n_cluster_servers,
)
from ._native import close_all as _close_all

#: PYME's default distribution: ``i % n_servers``, a random server without ``i``.
#: Runs in Rust; callable as ``distribution_function_round_robin(n_servers, i=None)``.
distribution_function_round_robin = Distribution("round-robin")

#: A random server for every file (PYME's ``distfcn_random``), in Rust.
distribution_function_random = Distribution("random")

#: A stable hash of the file name: the same name always goes to the same server.
distribution_function_hash = Distribution("hash")


def distribution_function_fixed(server):
    """A distribution that sends every file to server number ``server``, in Rust."""
    return Distribution("fixed:%d" % int(server))


# The library's threads call Python (outcome callbacks); close every streamer
# while the interpreter still runs them.
_atexit.register(_close_all)

_REPLACED = ("Stream", "Streamer", "distribution_function_round_robin", "n_cluster_servers")


def install(module=None, servers=None, **options):
    """Make PYME's ``PYME.IO.cluster_streaming`` use this package.

    Replaces ``Stream``, ``Streamer``, ``distribution_function_round_robin``
    and ``n_cluster_servers`` in the module (imported if it is not yet), so
    PYME's acquisition code (``ClusterBackend``, the spoolers) streams through
    this library without being edited. ``servers`` (a list of ``(address,
    port)`` or ``"host:port"``), if given, is used by every ``Streamer`` that
    PYME creates without servers, instead of discovery. ``options`` are
    keyword options of ``Streamer`` (``on_complete``, ``spill_dir``...) given
    to every ``Streamer`` PYME creates.

    Returns the module. ``uninstall()`` puts PYME's own back.
    """
    if module is None:
        module = _sys.modules.get("PYME.IO.cluster_streaming")
        if module is None:
            module = _importlib.import_module("PYME.IO.cluster_streaming")
    if not hasattr(module, "_pyme_streaming_original"):
        module._pyme_streaming_original = {
            name: getattr(module, name) for name in _REPLACED if hasattr(module, name)
        }

    pyme_defaults = module._pyme_streaming_original.get("Streamer")
    default_serverfilter = None
    if pyme_defaults is not None:
        try:
            import inspect

            default = inspect.signature(pyme_defaults).parameters["serverfilter"].default
            if isinstance(default, str):
                default_serverfilter = default
        except (TypeError, ValueError, KeyError):
            pass

    def InstalledStreamer(
        serverfilter=default_serverfilter,
        servers=servers,
        distribution_fcn=distribution_function_round_robin,
        filter=None,
        **kwargs
    ):
        merged = dict(options)
        merged.update(kwargs)
        return Streamer(serverfilter, servers, distribution_fcn, filter, **merged)

    InstalledStreamer.__doc__ = Streamer.__doc__
    InstalledStreamer.__name__ = "Streamer"
    module.Streamer = InstalledStreamer
    module.Stream = Stream
    module.distribution_function_round_robin = distribution_function_round_robin
    module.n_cluster_servers = n_cluster_servers
    return module


def uninstall(module=None):
    """Put PYME's own ``cluster_streaming`` classes back (undoes ``install``)."""
    if module is None:
        module = _sys.modules.get("PYME.IO.cluster_streaming")
    if module is None or not hasattr(module, "_pyme_streaming_original"):
        return
    for name, value in module._pyme_streaming_original.items():
        setattr(module, name, value)
    del module._pyme_streaming_original


__all__ = [
    "Stream",
    "Streamer",
    "Outcome",
    "Distribution",
    "Filter",
    "PzfFilter",
    "GzipFilter",
    "distribution_function_round_robin",
    "distribution_function_random",
    "distribution_function_hash",
    "distribution_function_fixed",
    "n_cluster_servers",
    "computer_name",
    "install",
    "uninstall",
    "StreamingError",
    "InvalidNameError",
    "ConnectError",
    "QueueFullError",
    "ClosedError",
    "ServerDownError",
    "DistributionError",
    "NoSuchStreamError",
    "FlushTimeoutError",
    "DiscoveryError",
    "SpillFolderError",
    "SpillBusyError",
    "ForkedError",
    "LimitsError",
]
