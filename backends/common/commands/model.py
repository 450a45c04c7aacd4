"""Loading a model, running it forward, and writing it out.

A worker on another host (backends.listen) is sent the files themselves: ``load``'s arrays then
hold their bytes (vocabulary.FILES, by role), which are written into the session's own folder
first; and ``save`` with ``"send_files": true`` answers the files it wrote, as bytes."""
import hashlib
import json
import tempfile
from pathlib import Path

from backends.common.commands import Call, command
from backends.common.errors import ModelInputError
from kdiff.protocol import vocabulary as v

FILE_ROLES = ("model", "weights", "custom_objects")
# the suffixes a received file may keep (the loaders tell formats apart by them)
FILE_SUFFIXES = {".json", ".h5", ".hdf5", ".keras", ".py"}


@command("load")
def load(call: Call) -> None:
    args = {key: call.args.get(key) for key in ("model", "weights", "custom_objects", "trust_lambda_bytecode")}
    received = v.unpack_files(call.arrays)
    if received:
        args.update(_write_received(call.worker, args, received))
    if "layout" in call.args:  # a listening worker builds each session's model in the layout it asks for
        layout = call.args["layout"]
        if layout not in (None, "channels_first", "channels_last"):
            raise ModelInputError(f"unknown layout {layout!r}", "ask for channels_first, channels_last or none")
        call.worker.options.pop("layout", None)
        if layout:
            call.worker.options["layout"] = layout
    key = reuse_key({**args, "layout": call.worker.options.get("layout")}) \
        if getattr(call.worker, "reuse_models", False) else None
    call.reply(call.worker.load(**args, reuse_key=key))


def _write_received(worker, args: dict, received: dict[str, bytes]) -> dict:
    """The received files written into the session's folder: their paths by role."""
    unknown = sorted(set(received) - set(FILE_ROLES))
    if unknown:
        raise ModelInputError(f"'load' was sent files of unknown roles {unknown}", f"send {', '.join(FILE_ROLES)}")
    folder = Path(tempfile.mkdtemp(prefix="load-", dir=worker.files_dir))
    paths = {}
    for role in FILE_ROLES:
        if role not in received:
            continue
        suffix = Path(str(args.get(role) or "")).suffix.lower()
        if suffix not in FILE_SUFFIXES:
            raise ModelInputError(f"the {role} file was sent as {args.get(role)!r}, not a "
                                  f"{'/'.join(sorted(FILE_SUFFIXES))} file", "send the model's own files")
        path = folder / f"{role}{suffix}"
        path.write_bytes(received[role])
        paths[role] = str(path)
    return paths


def reuse_key(args: dict) -> str:
    """A digest of the files' contents and the flags: a model loaded from the same may be reused."""
    digest = hashlib.sha256(json.dumps({"trust": bool(args.get("trust_lambda_bytecode")),
                                        "layout": args.get("layout")}).encode())
    for role in FILE_ROLES:
        path = args.get(role)
        digest.update(role.encode() + b"\0")
        if path and Path(path).is_file():
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


@command("forward")
def forward(call: Call) -> None:
    count = 0
    for name, outputs in call.worker.forward(call.numbered()):
        call.part({"layer": name}, v.pack(outputs))
        count += 1
    call.reply({"layers": count})


@command("self_check")
def self_check(call: Call) -> None:
    call.reply({"differing": call.worker.self_check(call.numbered())})


@command("outputs")
def outputs(call: Call) -> None:
    layers = list(call.args["layers"])
    gradients = call.args.get("gradients") is True  # the last backward's output gradients instead
    found = call.worker.last_output_gradients(layers) if gradients else call.worker.last_outputs(layers)
    counts, arrays = v.pack_by_layer(found)
    call.reply({"counts": counts}, arrays)


@command("save")
def save(call: Call) -> None:
    if not call.args.get("send_files"):
        call.reply({"files": call.worker.save(call.args["directory"])})
        return
    folder = Path(tempfile.mkdtemp(prefix="save-", dir=call.worker.files_dir))
    written = [Path(path) for path in call.worker.save(str(folder))]
    call.reply({"files": [path.name for path in written]},
               v.pack_files({path.name: path.read_bytes() for path in written}))
