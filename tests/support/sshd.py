"""A private OpenSSH sshd serving SFTP for tests.

``start_sshd()`` writes an sshd_config, an Ed25519 host key, a client key
and its authorized_keys line into a temporary directory, and runs
``/usr/sbin/sshd -D`` listening only on 127.0.0.1 at a free port, with
``internal-sftp`` as the only thing a login may do.  The client logs in as
the user running the tests, with its key only.  ``known_hosts`` holds the
server's host key under ``[127.0.0.1]:PORT``.  sshd is not optional: when it
is missing the tests fail (``.ci/run`` installs openssh-server).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 30.0


def write_key_pair(path: Path) -> str:
    """An Ed25519 private key at ``path`` (OpenSSH format, mode 0600); its public key line."""
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


class Sshd:
    """One running sshd; ``settings(remote_dir)`` gives the SFTP settings to reach it."""

    def __init__(self) -> None:
        if not os.access(SSHD, os.X_OK):
            raise RuntimeError(f"{SSHD} is missing: apt-get install openssh-server (.ci/run does)")
        self.directory = Path(tempfile.mkdtemp(prefix="exchange-sshd-"))
        self.user = getpass.getuser()
        self.host_public = write_key_pair(self.directory / "host_ed25519")
        self.client_key = self.directory / "client_ed25519"
        (self.directory / "authorized_keys").write_text(write_key_pair(self.client_key) + "\n")
        self.port = _free_port()
        self.known_hosts = self.directory / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_public}\n")
        self.config = self.directory / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.directory / 'host_ed25519'}",
            f"PidFile {self.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
            f"AllowUsers {self.user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",  # the temp dir's owner and modes are not sshd's business here
            "Subsystem sftp internal-sftp",
            "ForceCommand internal-sftp",
            "MaxStartups 100",
            "MaxSessions 100",
            "LogLevel ERROR",
        ]) + "\n")
        self.log = self.directory / "sshd.log"
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)
        self._wait_listening()

    def settings(self, remote_dir: Path | str, **overrides) -> dict:
        """SFTP settings (``[sftp]`` / ``[sftp_inbox]`` keys) reaching ``remote_dir`` on this server."""
        return {"host": "127.0.0.1", "port": self.port, "user": self.user, "key": str(self.client_key),
                "known_hosts": str(self.known_hosts), "remote_dir": str(remote_dir), **overrides}

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"sshd not listening on 127.0.0.1:{self.port}:\n{self.log.read_text()}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd() -> Sshd:
    return Sshd()
