"""CURVE keys (ZeroMQ's own encryption and authentication) for a listening end reached across machines:
a probe in a training job (kdiff attach) or a worker started with 'kdiff worker --listen'.

``kdiff keys DIR`` writes, with zmq.auth.create_certificates:
  DIR/probe.key, DIR/probe.key_secret     the listening end's pair (the job or the worker host keeps the secret)
  DIR/client.key, DIR/client.key_secret   a coordinator's pair
  DIR/authorized_clients/client.key       the client public keys a probe accepts
The listening end needs probe.key_secret and authorized_clients/; the coordinator needs
client.key_secret and probe.key. A client whose key is not in authorized_clients/ is refused
during the handshake by the ZAP authenticator thread: no request of its ever reaches the
listening end."""
from __future__ import annotations

import ipaddress
import socket as socket_module
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

AUTHORIZED = "authorized_clients"


def is_loopback(endpoint: str) -> bool:
    """True for tcp://127.x/::1/localhost endpoints and for ipc:// and inproc:// ones."""
    parsed = urlparse(endpoint)
    if parsed.scheme in ("ipc", "inproc"):
        return True
    host = (parsed.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket_module.gethostbyname(host)).is_loopback
        except (OSError, ValueError):
            return False


def make_keys(directory: str) -> list[Path]:
    """Write both key pairs and the authorized-clients folder; refuses to overwrite."""
    if not zmq.has("curve"):
        raise RuntimeError("this pyzmq was built without CURVE support (libsodium)")
    folder = Path(directory)
    existing = [folder / name for name in ("probe.key", "client.key") if (folder / name).exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists already; choose an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("probe", "client"):
        public, secret = zmq.auth.create_certificates(str(folder), name)
        Path(secret).chmod(0o600)
        written += [Path(public), Path(secret)]
    authorized = folder / AUTHORIZED
    authorized.mkdir(exist_ok=True)
    (authorized / "client.key").write_bytes((folder / "client.key").read_bytes())
    return written + [authorized / "client.key"]


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes
    authorized_dir: str

    @classmethod
    def load(cls, directory: str) -> "ServerKeys":
        public, secret = zmq.auth.load_certificate(str(Path(directory) / "probe.key_secret"))
        authorized = Path(directory) / AUTHORIZED
        if not authorized.is_dir():
            raise FileNotFoundError(f"{authorized} does not exist: make keys with 'kdiff keys {directory}'")
        return cls(public, secret, str(authorized))

    def start_authenticator(self, context: zmq.Context) -> ThreadAuthenticator:
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve(domain="*", location=self.authorized_dir)
        return authenticator

    def configure_server(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True


@dataclass(frozen=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def load(cls, directory: str) -> "ClientKeys":
        public, secret = zmq.auth.load_certificate(str(Path(directory) / "client.key_secret"))
        server_public, _ = zmq.auth.load_certificate(str(Path(directory) / "probe.key"))
        return cls(public, secret, server_public)

    def configure_client(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_serverkey = self.server_public
