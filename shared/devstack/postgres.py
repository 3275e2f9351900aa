"""A private PostgreSQL cluster for local runs and tests, from the machine's server binaries."""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import time
from pathlib import Path

ADMIN_USER = "itsm_admin"


def find_bindir() -> Path:
    """The newest PostgreSQL server bin directory installed (Debian's layout, then PATH)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres") or shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found: run `make install` (it installs Debian's "
        "postgresql package) or set DATABASE_URL to an existing server"
    )


def _reachable_by_others(path: Path) -> bool:
    """Whether every folder down to path lets other accounts pass (o+x)."""
    return all(
        p.stat().st_mode & stat.S_IXOTH for p in [*reversed(path.parents), path] if p.exists()
    )


def _cluster_dir_for(state_dir: Path) -> Path:
    """Where the cluster's files live: in the state directory, unless we are root and the
    `postgres` account (which must run the server) cannot reach it, as in a private temp
    folder; then in that account's home, one folder per state directory."""
    if os.geteuid() != 0 or _reachable_by_others(state_dir):
        return state_dir
    home = Path(pwd.getpwnam("postgres").pw_dir)
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    return home / "itsm-clusters" / digest


class LocalPostgres:
    """One cluster in a state directory, listening on 127.0.0.1 only; fsync stays on."""

    def __init__(self, state_dir: Path, port: int = 55432) -> None:
        self.state_dir = state_dir.resolve()
        self.cluster_dir = _cluster_dir_for(self.state_dir)
        self.data_dir = self.cluster_dir / "data"
        self.port = port
        self.bindir = find_bindir()
        self._password_file = self.state_dir / "admin-password"

    @property
    def password(self) -> str:
        """The admin password, made once per cluster and kept in the state directory."""
        if not self._password_file.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._password_file.write_text(secrets.token_urlsafe(24))
            self._password_file.chmod(0o600)
        return self._password_file.read_text().strip()

    @property
    def admin_dsn(self) -> str:
        """Superuser DSN for provisioning."""
        return f"postgresql://{ADMIN_USER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run_as_owner(
        self, args: list[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # PostgreSQL refuses to run as root; use the `postgres` account then.
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        # cwd "/": the postgres account may not be allowed into the caller's directory.
        result = subprocess.run(args, check=False, text=True, capture_output=True, cwd="/")  # noqa: S603
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr or result.stdout}")
        return result

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for p in [path, *path.rglob("*")]:
                os.chown(p, owner.pw_uid, owner.pw_gid)

    def initialised(self) -> bool:
        """Whether initdb already ran here."""
        return (self.data_dir / "PG_VERSION").exists()

    def _initdb_once(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.initialised():
            return
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.cluster_dir / "initdb-pw"
        pwfile.write_text(self.password + "\n")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.cluster_dir)
        try:
            self._run_as_owner(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    ADMIN_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _settings(self) -> list[str]:
        return [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.cluster_dir}",
            "-c fsync=on",
            "-c synchronous_commit=on",
            "-c max_connections=300",
            "-c shared_buffers=256MB",
            "-c log_min_messages=warning",
        ]

    def start(self, timeout: float = 60.0) -> None:
        """initdb on first use, then start the server and wait until it accepts connections."""
        self._initdb_once()
        if self.is_running():
            return
        self._chown(self.cluster_dir)
        self._run_as_owner(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.cluster_dir / "postgres.log"),
                "-o",
                " ".join(self._settings()),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ]
        )

    def spawn(self, timeout: float = 60.0) -> subprocess.Popen[bytes]:
        """Run the postmaster as a child process (for a supervisor: its pid is the server's, so
        its death is seen at once); return once it accepts connections.

        A server that pg_ctl left running in this cluster is stopped first. On failure the
        child is killed and the error says why, with the log's tail.
        """
        self._initdb_once()
        if self.is_running():
            self.stop()
        self._chown(self.cluster_dir)
        log_path = self.cluster_dir / "postgres.log"
        settings = [arg for option in self._settings() for arg in option.split(" ", 1)]
        owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [str(self.bindir / "postgres"), "-D", str(self.data_dir), *settings],
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # PostgreSQL refuses to run as root: drop to the `postgres` account.
                user=owner.pw_uid if owner else None,
                group=owner.pw_gid if owner else None,
                extra_groups=[] if owner else None,
                # Ctrl-C reaches the supervisor only, which then stops the server in order.
                start_new_session=True,
            )
        if owner is not None:
            os.chown(log_path, owner.pw_uid, owner.pw_gid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited during start-up (exit code {process.returncode}): "
                    + _last_line(log_path)
                )
            if self._accepts_connections():
                return process
            time.sleep(0.2)
        process.kill()
        process.wait()
        raise RuntimeError(f"postgres not ready after {timeout:.0f}s: {_last_line(log_path)}")

    def _accepts_connections(self) -> bool:
        probe = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, check=False, capture_output=True).returncode == 0  # noqa: S603

    def is_running(self) -> bool:
        """Whether the cluster's postmaster is up."""
        if not self.initialised():
            return False
        status = [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "status"]
        return self._run_as_owner(status, check=False).returncode == 0

    def destroy(self) -> None:
        """Stop the cluster and delete it and its state, for a clean start."""
        self.stop()
        shutil.rmtree(self.cluster_dir, ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def stop(self) -> None:
        """Fast shutdown: roll back open transactions, checkpoint, exit."""
        if self.is_running():
            self._run_as_owner(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
            )


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"
