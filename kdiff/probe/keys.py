"""CURVE keys (ZeroMQ's own encryption and authentication) for probes reached across machines.

``kdiff keys DIR`` writes, with zmq.auth.create_certificates:
  DIR/probe.key, DIR/probe.key_secret     the probe's pair (the job keeps the secret)
  DIR/client.key, DIR/client.key_secret   a coordinator's pair
  DIR/authorized_clients/client.key       the client public keys a probe accepts
The job needs probe.key_secret and authorized_clients/; the coordinator needs client.key_secret
and probe.key. A client whose key is not in authorized_clients/ is refused during the
handshake by the ZAP authenticator thread: no request of its ever reaches the probe."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

AUTHORIZED = "authorized_clients"


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
