"""The probe a training loop calls once per step: ``probe.step(batch)`` at the start of each
step, with the batch that step trains on."""
from __future__ import annotations

import sys
import time

from kdiff.probe.channel import ProbeChannel, Request
from kdiff.probe.capture import capture_of
from kdiff.protocol.capture import CaptureError


class Probe:
    """Serves kdiff coordinators from inside a training job.

    While nobody is attached, ``step`` costs one zero-timeout poll. Attached coordinators get
    the loss and gradient norm of every step; a snapshot is captured at the step boundary it
    was asked for. A failure to capture is reported to the coordinator and never raised into
    the job."""

    def __init__(self, model, endpoint: str, keys=None, loss=None):
        self.model = model
        self.loss = loss
        self.channel = ProbeChannel(endpoint, keys)
        self.next_step = 0
        self._capture = None  # the backend's capture (kdiff.protocol.capture), made on first use

    @property
    def endpoint(self) -> str:
        """Where the probe listens (with the port filled in when bound to port 0 or '*')."""
        return self.channel.endpoint

    @property
    def wants_batch(self) -> bool:
        """True when the next ``step`` will use its batch (someone is attached or waits for a snapshot)."""
        return bool(self.channel.peers.attached or self.channel.peers.snapshots)

    def step(self, batch, step: int | None = None) -> None:
        """A step boundary: ``batch`` is (x, y) or (x, y, sample_weight) for the step about to run
        (x and y each an array, a list of arrays, or a dict by input/output name), or a function
        returning it (called only when the probe needs it); ``step`` its number (default: one more
        than the last)."""
        number = self.next_step if step is None else step
        self.next_step = number + 1
        try:
            for request in self.channel.requests():
                self._answer(request, number)
        except Exception as exc:  # noqa: BLE001 -- whatever a peer sends, the job goes on
            sys.stderr.write(f"kdiff probe: a request could not be answered ({type(exc).__name__}: {exc}); "
                             "the job goes on\n")
        if not self.wants_batch:
            return
        try:
            self._serve_step(batch, number)
        except Exception as exc:  # the job goes on whatever the capture meets
            self._fail_everyone(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Probe":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- inside ------------------------------------------------------------------------
    def _answer(self, request: Request, number: int) -> None:
        peers = self.channel.peers
        if request.name == "hello":
            self._send(request.peer, self.channel.hello(number, self._backend(), getattr(self.model, "name", ""),
                                                        self._model_hash()))
        elif request.name == "attach":
            peers.attached.add(request.peer)
            self._send(request.peer, {"type": "attached", "step": number})
        elif request.name == "detach":
            peers.attached.discard(request.peer)
            peers.snapshots.pop(request.peer, None)
            peers.held_models.pop(request.peer, None)
            self._send(request.peer, {"type": "detached", "step": number})
        elif request.at_step is not None and request.at_step < number:
            self._send(request.peer, {"type": "error", "message": f"step {request.at_step} has passed: the job is "
                                                                  f"at step {number}"})
        else:
            at_step = number if request.at_step is None else request.at_step
            peers.snapshots[request.peer] = at_step
            peers.held_models[request.peer] = request.model_hash
            self._send(request.peer, {"type": "snapshot-pending", "at_step": at_step})

    def _serve_step(self, batch, number: int) -> None:
        peers = self.channel.peers
        due = [peer for peer, at_step in peers.snapshots.items() if at_step == number]
        if not peers.attached and not due:
            return  # a snapshot asked for a later step: nothing to do yet
        capture = self._capturer()
        xs, ys = capture.split(batch() if callable(batch) else batch)
        if peers.attached and not due:   # a snapshot's own pass gives the step's metrics as well
            metrics = {"type": "metrics", "step": number, **capture.live_metrics(xs, ys)}
            for peer in list(peers.attached):
                self._send(peer, metrics)
        if due:
            started = time.perf_counter()
            held = {peers.held_models.pop(peer, None) for peer in due}
            header, arrays = capture.snapshot(xs, ys, number, held.pop() if len(held) == 1 else None)
            header["capture_seconds"] = time.perf_counter() - started
            if peers.attached:
                metrics = {"type": "metrics", "step": number, "loss": header["loss"], "grad_norm": header["grad_norm"]}
                for peer in list(peers.attached):
                    self._send(peer, metrics)
            for peer in due:
                del peers.snapshots[peer]
                self._send(peer, header, arrays)

    def _capturer(self):
        if self._capture is None:
            self._capture = capture_of(self.model, self.loss)
        return self._capture

    def _backend(self) -> str:
        try:
            return self._capturer().backend
        except (CaptureError, AttributeError, TypeError):  # no model yet (KerasProbe before fit), or no loss
            return ""

    def _model_hash(self) -> str:
        try:
            return self._capturer().model_hash()
        except Exception:  # noqa: BLE001 -- a hello is answered whatever the model is
            return ""

    def _send(self, peer: bytes, header: dict, arrays: dict | None = None) -> None:
        """Send without waiting; a peer that is gone is forgotten."""
        if self.channel.send(peer, header, arrays) == "gone":
            self.channel.peers.attached.discard(peer)
            self.channel.peers.snapshots.pop(peer, None)
            self.channel.peers.held_models.pop(peer, None)

    def _fail_everyone(self, message: str) -> None:
        peers = self.channel.peers
        sys.stderr.write(f"kdiff probe: capture failed ({message}); the job goes on\n")
        for peer in set(peers.attached) | set(peers.snapshots):
            self._send(peer, {"type": "error", "message": message})
        peers.attached.clear()
        peers.snapshots.clear()
        peers.held_models.clear()
