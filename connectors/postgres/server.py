"""A private PostgreSQL cluster as a managed server, for ``make run`` and the tests.

Production points ``OPS_DATABASE_URL`` at a real server; this module is for the
machine the engine is developed and tested on, where Debian's ``postgresql``
package (``make install``) provides the binaries but no cluster of ours.

:class:`LocalPostgres` keeps everything in one data directory: ``initdb`` the
first time (so a restart finds the data again), a configuration file of its
own (``ops_local.conf``, rewritten at every start: the port may change), the
unix socket inside the data directory. It listens on 127.0.0.1 only and trusts
every connection from there: it is a throw-away development server, never one
that other machines reach.

PostgreSQL refuses to run as root. When the current user is root, every server
binary runs as the ``postgres`` OS user (``runuser -u postgres --``), the data
directory is owned by ``postgres``, and the directories above it get the
``o+x`` bit where ``postgres`` could not pass through them (pytest's
``/tmp/pytest-of-root`` is mode 700): traversal only, nothing becomes
listable or readable. As any other user the binaries run directly.

``pg_ctl start`` detaches the server (its own session), so a Ctrl-C on the
terminal does not reach it: :meth:`LocalPostgres.stop` (also registered with
:mod:`atexit` while the server runs) ends it.
"""

from __future__ import annotations

import atexit
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path
from types import TracebackType

from connectors.broker import free_port

__all__ = [
    "LocalPostgres",
    "PostgresError",
    "PostgresNotInstalled",
    "PostgresStartError",
    "find_bindir",
    "port_in_use",
]

#: The database the engine uses; created at every start if missing.
DATABASE = "ops"
#: The superuser ``initdb`` creates (trusted on 127.0.0.1, no password).
SUPERUSER = "postgres"
#: The OS user the server runs as when we are root.
OS_USER = "postgres"
#: Longest unix socket path the kernel takes (sun_path is 108 bytes with the NUL).
_MAX_SOCKET_PATH = 107
#: Our settings, included from postgresql.conf and rewritten at every start.
_CONF_NAME = "ops_local.conf"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    """Something went wrong with the local PostgreSQL server."""


class PostgresNotInstalled(PostgresError):
    """No PostgreSQL server binaries on this machine."""


class PostgresStartError(PostgresError):
    """initdb or the server failed, or the server did not become ready in time."""


def find_bindir() -> Path:
    """The directory of the PostgreSQL server binaries (``initdb``, ``pg_ctl``, ``postgres``).

    ``pg_config --bindir`` first; on Debian ``/usr/bin/pg_config`` may come from
    ``libpq-dev`` without the server, so the answer counts only if ``initdb`` is
    there. Then the newest ``/usr/lib/postgresql/<version>/bin`` (Debian keeps
    each major version side by side).
    """
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            bindir = Path(out.stdout.strip())
            if (bindir / "initdb").is_file():
                return bindir
        except (OSError, subprocess.SubprocessError):
            pass
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").is_file()]

    def _version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    if candidates:
        return max(candidates, key=_version)
    raise PostgresNotInstalled(
        "PostgreSQL is not installed (no initdb via pg_config --bindir or in /usr/lib/postgresql/*/bin); "
        "run make install (it installs Debian's postgresql package)"
    )


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie.

    The server is not our child (pg_ctl detaches it), and the init process of a
    container may never reap it, so a dead server can stay a zombie: signal 0
    alone would call it alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _conf_quote(value: str) -> str:
    """A value quoted for postgresql.conf (single quotes, doubled inside)."""
    return "'" + value.replace("'", "''") + "'"


class LocalPostgres:
    """A PostgreSQL cluster in ``data_dir``, listening on ``127.0.0.1:port``.

    ``port=None`` picks a free port in ``__init__`` (so :attr:`dsn` is known
    before :meth:`start`). The server log goes to ``log_path`` (appended;
    default ``<data_dir>.log`` beside the data directory). One owner per
    instance; usable as a context manager::

        with LocalPostgres(Path(".run/postgres"), port=5433) as pg:
            asyncio.run(migrate(pg.dsn))     # postgresql://postgres@127.0.0.1:5433/ops
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = int(port) if port is not None else free_port(host)
        self.log_path = (
            Path(log_path).absolute()
            if log_path is not None
            else self.data_dir.with_name(self.data_dir.name + ".log")
        )
        self._bindir: Path | None = None
        self._socket_dir: Path | None = None
        self._atexit_registered = False

    # -- addresses ------------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/ops``: the engine's database."""
        return self.dsn_for(DATABASE)

    def dsn_for(self, database: str) -> str:
        """The DSN of another database on this server (the tests use one per test)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """PID of the running postmaster (from ``postmaster.pid``), or None."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    @property
    def running(self) -> bool:
        """True while a postmaster runs on this data directory."""
        return self.pid is not None

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> LocalPostgres:
        """initdb if the data directory has no cluster, start the server, create ``ops``.

        Blocks until the server accepts connections. Raises
        :class:`PostgresNotInstalled` without the binaries and
        :class:`PostgresStartError` (with the log tail) when initdb or the
        server fails; a server already running on the data directory is an
        error too (it is not ours to adopt: another ``ops-engine up`` may own
        it). Returns ``self``.
        """
        bindir = self.bindir
        if self.running:
            raise PostgresStartError(
                f"a PostgreSQL server (pid {self.pid}) already runs on {self.data_dir}; stop it with: "
                f"{self._as_server_user_text()}{bindir / 'pg_ctl'} stop -D {self.data_dir} -m fast"
            )
        if port_in_use(self.host, self.port):
            raise PostgresStartError(
                f"{self.host}:{self.port} is already in use by another process; pick another port"
            )
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._check_version()
        self._write_conf()
        self._prepare_log()
        argv = [
            str(bindir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(max(1, int(timeout))),
        ]
        if not self._atexit_registered:
            atexit.register(self._atexit_stop)
            self._atexit_registered = True
        try:
            result = self._run_server_tool(argv, timeout=timeout + 10)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise PostgresStartError(
                f"pg_ctl start did not return within {timeout + 10:.0f}s" + self._tail_for_error()
            ) from exc
        if result.returncode != 0:
            self.stop()
            raise PostgresStartError(
                f"pg_ctl start failed (exit {result.returncode}): {result.stdout.strip()} {result.stderr.strip()}"
                + self._tail_for_error()
            )
        try:
            self.create_database(DATABASE, exist_ok=True)
        except PostgresError:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """``pg_ctl stop -m fast``; if that fails, SIGQUIT then SIGKILL the postmaster by PID.

        Fast mode rolls back open transactions and disconnects clients instead
        of waiting for them (the default, smart, would wait for every pool).
        Idempotent: a server that is not running is left alone.
        """
        try:
            if self.running:
                argv = [
                    str(self.bindir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(max(1, int(timeout))),
                ]
                try:
                    self._run_server_tool(argv, timeout=timeout + 10)
                except (OSError, subprocess.SubprocessError):
                    pass
                pid = self.pid
                if pid is not None:
                    # Immediate shutdown first (children exit too), then the hard way.
                    for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
                        try:
                            os.kill(pid, sig)
                        except ProcessLookupError:
                            break
                        deadline = time.monotonic() + wait
                        while _pid_alive(pid) and time.monotonic() < deadline:
                            time.sleep(0.05)
                        if not _pid_alive(pid):
                            break
        finally:
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
                self._socket_dir = None
            if self._atexit_registered:
                atexit.unregister(self._atexit_stop)
                self._atexit_registered = False

    # -- databases ------------------------------------------------------------------------
    def create_database(self, name: str, *, exist_ok: bool = False) -> None:
        """CREATE DATABASE ``name`` through psql (no event loop: callable from anywhere)."""
        self._check_db_name(name)
        if exist_ok and self._database_exists(name):
            return
        result = self._psql(f'CREATE DATABASE "{name}"')
        if result.returncode != 0:
            # Another process may have created it between the check and now.
            if exist_ok and self._database_exists(name):
                return
            raise PostgresError(f"CREATE DATABASE {name} failed: {result.stderr.strip()}")

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` if it exists, disconnecting whoever is still in it."""
        self._check_db_name(name)
        result = self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if result.returncode != 0:
            raise PostgresError(f"DROP DATABASE {name} failed: {result.stderr.strip()}")

    def _database_exists(self, name: str) -> bool:
        result = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if result.returncode != 0:
            raise PostgresError(f"cannot query {self.host}:{self.port}: {result.stderr.strip()}")
        return result.stdout.strip() == "1"

    @staticmethod
    def _check_db_name(name: str) -> None:
        # Names go into SQL text (CREATE DATABASE takes no parameters): plain identifiers only.
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")

    def _psql(self, sql: str) -> subprocess.CompletedProcess[str]:
        # Over TCP as the trusted superuser, so it needs no OS user switch.
        argv = [
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-c",
            sql,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=self._env())

    # -- set-up ---------------------------------------------------------------------------
    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _server_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(OS_USER)
        except KeyError:
            raise PostgresNotInstalled(
                f"running as root, PostgreSQL must run as the {OS_USER!r} OS user, which does not exist; "
                "run make install (Debian's postgresql package creates it)"
            ) from None

    def _as_server_user_text(self) -> str:
        return f"runuser -u {OS_USER} -- " if self._as_root() else ""

    def _run_server_tool(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run initdb/pg_ctl: as ``postgres`` through runuser when root, else directly."""
        if self._as_root():
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            argv = [runuser, "-u", OS_USER, "--", *argv]
        # cwd "/": the server user may not be allowed into the caller's working directory.
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            env=self._env(),
            stdin=subprocess.DEVNULL,
        )

    @staticmethod
    def _env() -> dict[str, str]:
        # PGDATA, PGPORT, PGHOST... would point the tools elsewhere; the command lines say it all.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGCONNECT_TIMEOUT"] = "10"
        return env

    def _prepare_dirs(self) -> None:
        """Create the data directory (mode 700) and, as root, hand it to ``postgres``."""
        if not self._as_root():
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            return
        user = self._server_user()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._make_traversable(self.data_dir.parent, user)
        if not self.data_dir.exists():
            self.data_dir.mkdir(mode=0o700)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        owner = self.data_dir.stat().st_uid
        if owner != user.pw_uid:
            if any(self.data_dir.iterdir()):
                raise PostgresStartError(
                    f"{self.data_dir} is owned by uid {owner}, not by {OS_USER}, and not empty; "
                    f"chown -R {OS_USER}: it or choose another data directory"
                )
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        os.chmod(self.data_dir, 0o700)

    @staticmethod
    def _make_traversable(directory: Path, user: pwd.struct_passwd) -> None:
        """Give ``o+x`` to the directories above the data dir that ``user`` could not pass.

        Only directories the current user owns are changed; any other one the
        server user cannot pass is an error that names it.
        """
        groups = {user.pw_gid} | {g.gr_gid for g in _groups_of(user.pw_name)}
        me = os.geteuid()
        for path in [directory, *directory.parents]:
            st = path.stat()
            if st.st_uid == user.pw_uid:
                ok = bool(st.st_mode & stat.S_IXUSR)
            elif st.st_gid in groups:
                ok = bool(st.st_mode & stat.S_IXGRP)
            else:
                ok = bool(st.st_mode & stat.S_IXOTH)
            if ok:
                continue
            if st.st_uid != me:
                raise PostgresStartError(
                    f"the {OS_USER} OS user cannot pass through {path} (mode {stat.filemode(st.st_mode)}); "
                    "give it o+x or put the data directory elsewhere"
                )
            os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)

    def _initdb(self) -> None:
        argv = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        result = self._run_server_tool(argv, timeout=180)
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb {self.data_dir} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        # Trust on the loopback address only (initdb's file also trusts ::1 and replication).
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# written by connectors/postgres/server.py: a private development server\n"
            "# TYPE  DATABASE  USER  ADDRESS        METHOD\n"
            "local   all       all                  trust\n"
            "host    all       all   127.0.0.1/32   trust\n"
        )
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\n# ops-engine: port, addresses and socket directory\ninclude_if_exists = '{_CONF_NAME}'\n")
        self._chown_to_server(hba)

    def _check_version(self) -> None:
        """A data directory of another major version would not start; say so plainly."""
        data_version = (self.data_dir / "PG_VERSION").read_text().strip()
        result = subprocess.run(
            [str(self.bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30
        )
        found = re.search(r"(\d+)(?:\.\d+)?", result.stdout)
        if found and found.group(1) != data_version.split(".")[0]:
            raise PostgresStartError(
                f"{self.data_dir} holds a PostgreSQL {data_version} cluster but the server binaries in "
                f"{self.bindir} are {found.group(1)}; remove the data directory or install PostgreSQL {data_version}"
            )

    def _write_conf(self) -> None:
        socket_dir = self.data_dir
        if len(str(socket_dir / f".s.PGSQL.{self.port}")) > _MAX_SOCKET_PATH:
            # A deep data directory (long test names) makes a socket path the kernel refuses.
            self._socket_dir = Path(tempfile.mkdtemp(prefix="ops-pg-sock-"))
            self._chown_to_server(self._socket_dir)
            socket_dir = self._socket_dir
        conf = self.data_dir / _CONF_NAME
        conf.write_text(
            "# written at every start by connectors/postgres/server.py\n"
            f"listen_addresses = {_conf_quote(self.host)}\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = {_conf_quote(str(socket_dir))}\n"
        )
        self._chown_to_server(conf)

    def _prepare_log(self) -> None:
        # pg_ctl opens the log as the server user: create it here and hand it over.
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if self._as_root():
            self._make_traversable(self.log_path.parent, self._server_user())
            self._chown_to_server(self.log_path)

    def _chown_to_server(self, path: Path) -> None:
        if self._as_root():
            user = self._server_user()
            os.chown(path, user.pw_uid, user.pw_gid)

    # -- diagnostics ----------------------------------------------------------------------
    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log ('' if there is none yet)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            tail = deque(fh, maxlen=lines)
        return b"".join(tail).decode("utf-8", errors="replace")

    def _tail_for_error(self) -> str:
        return f"\n--- last lines of {self.log_path} ---\n{self.log_tail()}"

    def _atexit_stop(self) -> None:
        try:
            self.stop(timeout=10)
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> LocalPostgres:
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
        return f"<LocalPostgres {self.data_dir} {self.host}:{self.port} pid={self.pid} {state}>"


def _groups_of(username: str) -> list[grp.struct_group]:
    """The supplementary groups that list ``username``."""
    return [g for g in grp.getgrall() if username in g.gr_mem]
