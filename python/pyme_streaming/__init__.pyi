"""Type stubs of pyme_streaming (the classes come from the Rust extension _native)."""

import os
from types import ModuleType, TracebackType
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Tuple, Type, Union

__version__: str

# Anything with the buffer protocol and C-contiguous memory: bytes, bytearray,
# memoryview, numpy arrays, array.array.
BytesLike = Any
ServerSpec = Union[Tuple[Union[str, bytes], int], str]
DistributionFcn = Union["Distribution", str, Callable[..., int]]
FilterFcn = Union["Filter", Callable[[Any], BytesLike]]
# A server's state: "up", "connecting", "resting" or "down".
ServerState = str
ServerCallback = Callable[[int, ServerState], None]
Stats = Dict[str, int]
# One server's counters (Streamer.server_stats): "state" is a ServerState, the
# rest ints: files_acknowledged, bytes_acknowledged, files_failed, bytes_failed,
# queue_files, queue_bytes, in_flight_files, in_flight_bytes, files_sent,
# bytes_sent, reconnects, retries, moved_away.
ServerStats = Dict[str, Union[int, str]]

class StreamingError(Exception): ...
class InvalidNameError(StreamingError): ...
class ConnectError(StreamingError): ...
class QueueFullError(StreamingError): ...
class ClosedError(StreamingError): ...
class ServerDownError(StreamingError): ...
class DistributionError(StreamingError): ...
class NoSuchStreamError(StreamingError): ...
class FlushTimeoutError(StreamingError): ...
class DiscoveryError(StreamingError): ...
class SpillFolderError(StreamingError): ...
class SpillBusyError(SpillFolderError): ...
class ForkedError(StreamingError): ...
class LimitsError(StreamingError): ...

class Outcome:
    """The end of one file."""

    name: str
    server: int
    bytes: int
    ok: bool
    http_status: Optional[int]
    error: Optional[str]

class Distribution:
    """A built-in distribution policy, run in Rust: "round-robin", "random", "hash", "least-loaded", "fixed:N"."""

    def __init__(self, name: str) -> None: ...
    @property
    def name(self) -> str: ...
    def __call__(self, n_servers: int, i: Optional[int] = None, name: str = "") -> int: ...

class Filter:
    """A built-in filter, run by the library's sender threads without the GIL."""

class PzfFilter(Filter):
    def __init__(
        self,
        width: int,
        height: int,
        dtype: str = "uint16",
        compression: str = "huffman",
        quantization: Optional[str] = None,
        quant_offset: float = 0.0,
        quant_scale: float = 1.0,
        sequence_id: int = 0,
        depth: int = 1,
    ) -> None: ...

class GzipFilter(Filter):
    def __init__(self, level: int = 1) -> None: ...

class Streamer:
    """PYME's Streamer: one persistent pipelined connection per server."""

    def __init__(
        self,
        serverfilter: Optional[str] = None,
        servers: Optional[Iterable[ServerSpec]] = None,
        distribution_fcn: Optional[DistributionFcn] = None,
        filter: Optional[FilterFcn] = None,
        *,
        on_complete: Optional[Callable[[Outcome], None]] = None,
        queue_files: int = 256,
        queue_bytes: int = 268435456,
        memory_limit: int = 1073741824,
        put_timeout: Optional[float] = None,
        connect_timeout: float = 5.0,
        response_timeout: float = 30.0,
        failover: bool = True,
        max_retries: int = 2,
        spread_when_full: bool = False,
        spill_dir: Optional[Union[str, os.PathLike]] = None,
        sender_poll: Optional[float] = 0.001,
        mdns: bool = True,
        registry: Optional[Union[str, os.PathLike]] = None,
        require_all_servers: bool = False,
        server_callback: Optional[ServerCallback] = None,
        round_robin_start: Optional[int] = None,
        discovery_period_ms: int = 10000,
    ) -> None: ...
    @property
    def servers(self) -> List[Tuple[Any, int]]: ...
    @property
    def n_servers(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def __len__(self) -> int: ...
    def server_state(self, index: int) -> ServerState: ...
    def server_stats(self, index: int) -> ServerStats: ...
    def put(self, filename: str, data: Any, **kwargs: Any) -> None: ...
    def put_stream(self, idx: int, filename: str, data: Any) -> None: ...
    def flush(self, timeout: Optional[float] = None) -> None: ...
    def close(self) -> Stats: ...
    def stats(self) -> Stats: ...
    def failures(self) -> List[Outcome]: ...
    def take_failures(self) -> List[Outcome]: ...
    def __enter__(self) -> "Streamer": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class DirManager(Protocol):
    def register_file(self, filename: str, url: str, size: int) -> Any: ...

class Stream:
    """PYME's Stream: one persistent pipelined connection to one server."""

    def __init__(
        self,
        server_address: Union[str, bytes],
        server_port: int,
        dir_manager: Optional[DirManager] = None,
        filter: Optional[FilterFcn] = None,
        *,
        on_complete: Optional[Callable[[Outcome], None]] = None,
        queue_files: int = 256,
        queue_bytes: int = 268435456,
        memory_limit: int = 1073741824,
        put_timeout: Optional[float] = None,
        connect_timeout: float = 5.0,
        response_timeout: float = 30.0,
        max_retries: int = 2,
        spill_dir: Optional[Union[str, os.PathLike]] = None,
        sender_poll: Optional[float] = 0.001,
        server_callback: Optional[ServerCallback] = None,
    ) -> None: ...
    @property
    def server_address(self) -> str: ...
    def server_state(self) -> ServerState: ...
    @property
    def server_port(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def put(self, filename: str, data: Any) -> None: ...
    def finalize(self, filename: Optional[str] = None) -> None: ...
    def flush(self, timeout: Optional[float] = None) -> None: ...
    def close(self) -> Stats: ...
    def stats(self) -> Stats: ...
    def failures(self) -> List[Outcome]: ...
    def take_failures(self) -> List[Outcome]: ...
    def __enter__(self) -> "Stream": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

distribution_function_round_robin: Distribution
distribution_function_random: Distribution
distribution_function_hash: Distribution

def distribution_function_fixed(server: int) -> Distribution: ...
def n_cluster_servers(
    serverfilter: str, *, mdns: bool = True, registry: Optional[Union[str, os.PathLike]] = None
) -> int: ...
def computer_name() -> str: ...
def install(
    module: Optional[ModuleType] = None,
    servers: Optional[Iterable[ServerSpec]] = None,
    **options: Any,
) -> ModuleType: ...
def uninstall(module: Optional[ModuleType] = None) -> None: ...
