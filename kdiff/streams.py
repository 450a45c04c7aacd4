"""Both workers stream one message per layer; pair the two streams as they arrive.

Each side's part is kept only until its partner from the other side is in, then handed on
and dropped: the coordinator never holds a whole model's activations. A side whose parts wait
for partners while the other side's do not is ahead: it is not read until the other catches up,
so its worker waits (ZeroMQ's small queues block its sends) holding its own results, and the
coordinator holds about one layer pair at a time however far apart the two frameworks' speeds are.

Pairs are compared in a thread of their own while the next parts arrive (numpy and ZeroMQ release
the GIL for their work): one pair is compared while at most one more is received, so the
coordinator holds at most two pairs."""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

from kdiff.alignment import LayerPair
from kdiff.workers import WorkerPool


def parts_of(pairs: list[LayerPair], with_own: bool = False) -> dict[tuple[str, str], int]:
    """(side, layer name) -> the index of the pair it belongs to: each side's cut (the last layer of a
    group; kdiff.alignment), and with ``with_own`` the pair's own layers where a group ends elsewhere."""
    table = {}
    for index, pair in enumerate(pairs):
        if pair.a is None or pair.b is None:
            continue
        for side, own in (("a", pair.a), ("b", pair.b)):
            table[(side, pair.cut(side))] = index
            if with_own:
                table[(side, own["name"])] = index
    return table


def _needed(pair: LayerPair, side: str, with_own: bool) -> tuple[str, ...]:
    own = (pair.a if side == "a" else pair.b)["name"]
    return (pair.cut(side),) + ((own,) if with_own and own != pair.cut(side) else ())


def stream_pairs(pool: WorkerPool, pairs: list[LayerPair], command: str, arrays: dict, timeout: float,
                 on_part: Callable[[str, dict, dict], object], on_pair: Callable[[str, object, object], None],
                 b_arrays: dict | None = None, args: dict | None = None,
                 merge: Callable[[object, object], object] | None = None) -> None:
    """Send ``command`` (with ``args``) to both sides (side B gets ``b_arrays`` when given: the same input in its own
    layout); ``on_part(side, header, arrays)`` turns each arriving part into what is kept, and
    ``on_pair(a_layer, a_kept, b_kept)`` receives each completed pair (``a_layer``: side A's name of the
    pair's layer). A pair's part on each side is its cut's (kdiff.alignment), of the same ``kind`` (a
    command may stream several kinds); with ``merge``, a group whose cut is not the pair's own layer also
    waits for the own layer's part, and ``merge(cut_kept, own_kept)`` is what is handed on (a gradient:
    the cut's output gradient, the own layer's weight gradients)."""
    with_own = merge is not None
    belongs = parts_of(pairs, with_own)
    waiting: dict[str, dict[tuple, object]] = {"a": {}, "b": {}}
    deadline = time.monotonic() + timeout
    sent = {"a": arrays, "b": arrays if b_arrays is None else b_arrays}
    pending = {side: pool.send(side, command, args, sent[side]) for side in "ab"}
    comparing = PairComparer(on_pair)
    try:
        while pending:
            side, header, part_arrays = pool.receive_any(pending, deadline, hold=_ahead(waiting, pending))
            if header["type"] == "reply":
                del pending[side]
                continue
            layer, kind = header.get("layer"), header.get("kind", "")
            kept = on_part(side, header, part_arrays)
            index = belongs.get((side, layer))
            if index is None:
                continue
            waiting[side][(kind, layer)] = kept
            kept = None
            pair = pairs[index]
            keys = {s: [(kind, name) for name in _needed(pair, s, with_own)] for s in "ab"}
            if not all(key in waiting[s] for s in "ab" for key in keys[s]):
                continue
            handed = {}
            for s in "ab":
                parts = [waiting[s].pop(key) for key in keys[s]]
                handed[s] = merge(parts[0], parts[1]) if len(parts) == 2 else parts[0]
            comparing.put(pair.a["name"], handed["a"], handed["b"])
            handed = parts = None  # the comparing thread holds them now
    except BaseException:
        comparing.close(raise_error=False)  # the stream's own failure is the one to report
        raise
    comparing.close()


class PairComparer:
    """Calls ``on_pair`` on each pair handed over, in a thread of its own, one pair at a time: a
    pair is handed over only once the one before it is compared. An exception raised by ``on_pair``
    is raised again in the caller's thread, at the next hand-over or at ``close``."""

    def __init__(self, on_pair: Callable[[str, object, object], None]):
        self.on_pair = on_pair
        self.idle = threading.Semaphore(1)
        self.pairs: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="kdiff-compare", daemon=True)
        self.thread.start()

    def put(self, a_layer: str, a_kept: object, b_kept: object) -> None:
        self.idle.acquire()  # the pair before is compared and dropped
        if self.error is not None:
            self.idle.release()
            self._raise_error()
        self.pairs.put((a_layer, a_kept, b_kept))

    def close(self, raise_error: bool = True) -> None:
        """Wait for the last pair, stop the thread, and raise what ``on_pair`` raised, if anything."""
        self.pairs.put(None)
        self.thread.join()
        if raise_error:
            self._raise_error()

    def _run(self) -> None:
        while (pair := self.pairs.get()) is not None:
            try:
                if self.error is None:
                    self.on_pair(*pair)
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
                self.error = exc
            finally:
                pair = None
                self.idle.release()

    def _raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def _ahead(waiting: dict[str, dict], pending: dict) -> tuple:
    """The side to leave unread for now: the one with parts waiting for partners when the other,
    still streaming, has none (when both have some, reading both is the only way forward)."""
    for side, other in (("a", "b"), ("b", "a")):
        if waiting[side] and not waiting[other] and other in pending:
            return (side,)
    return ()
