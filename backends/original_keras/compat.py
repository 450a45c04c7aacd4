"""Everything needed to run Theano-era Keras (1.2.2, 2.3.1) on Python 3.11 with theano-pymc.

Call order in a worker: `configure_theano(cache_dir)`, then `prepare_keras(major)`, then
import `backends.original_keras.loading`. Each shim below says why it exists; none changes
what a layer computes.
"""
from __future__ import annotations

import collections
import collections.abc
import inspect
import os
import sys

# Settings that must hold for every run; user flags from an existing THEANO_FLAGS come after
# them (Theano lets a later flag win), so a user can still override on purpose.
_BASE_THEANO_FLAGS = (
    "floatX=float32",  # Keras users ran float32; Theano's own default is float64
    "device=cpu",
    "blas__ldflags=",  # numpy 1.23 has no blas_opt_info; empty = numpy's BLAS via its C API
)

# Names Python 3.10 removed from `collections` that Keras 2.3.1 still reads there.
_COLLECTIONS_ABC_NAMES = (
    "Callable", "Container", "Hashable", "Iterable", "Iterator", "Mapping",
    "MutableMapping", "MutableSequence", "MutableSet", "Sequence", "Set", "Sized",
)


# Theano walks its graphs recursively (gradients, optimisation, cloning): ResNet50 in channels_last
# (keras_applications 1.0.8) differentiated with every layer's output exceeds Python's default 1000
# frames ("RecursionError: maximum recursion depth exceeded" in the worker's forward_backward)
RECURSION_LIMIT = 20_000


def configure_theano(cache_dir: str) -> None:
    """Set THEANO_FLAGS for CPU float32 with compiled ops cached under `cache_dir`; allow deep recursion."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    if "theano" in sys.modules:
        raise RuntimeError("configure_theano() must run before theano is imported")
    cache_dir = os.path.abspath(cache_dir)
    if "," in cache_dir or "=" in cache_dir:
        raise ValueError(f"Theano cannot take a compile directory whose path has ',' or '=': {cache_dir}")
    os.makedirs(cache_dir, exist_ok=True)
    flags = [*_BASE_THEANO_FLAGS, f"base_compiledir={cache_dir}"]
    user_flags = os.environ.get("THEANO_FLAGS", "").strip(", ")
    if user_flags:
        flags.append(user_flags)
    os.environ["THEANO_FLAGS"] = ",".join(flags)
    # Scan's Cython module does not compile against Python 3.11 headers (longintrepr.h moved);
    # when it cannot be imported, Theano runs scan's loop in Python around the compiled step
    # function (measured: identical outputs to unroll=True for Keras LSTM/GRU).
    sys.modules["theano.scan.scan_perform_ext"] = None


def prepare_keras(keras_major: int) -> None:
    """Apply the aliases Keras `keras_major` needs, import it on Theano, set inference mode."""
    if keras_major not in (1, 2):
        raise ValueError(f"keras_major must be 1 or 2, not {keras_major!r}")
    if "keras" in sys.modules:
        raise RuntimeError("prepare_keras() must run before keras is imported")
    os.environ["KERAS_BACKEND"] = "theano"
    for name in _COLLECTIONS_ABC_NAMES:
        # Python 3.10 removed the collections.* aliases of collections.abc.*.
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    import theano.ifelse  # Keras 1 reaches theano.ifelse as an attribute without importing it
    import theano.sandbox.rng_mrg as rng_mrg

    # theano-pymc renamed MRG_RandomStreams to MRG_RandomStream; Keras imports the old name.
    rng_mrg.MRG_RandomStreams = rng_mrg.MRG_RandomStream
    if keras_major == 1 and not hasattr(inspect, "getargspec"):
        # Python 3.11 removed inspect.getargspec; Keras 1 only reads .args / [0] of it.
        inspect.getargspec = inspect.getfullargspec

    _batched_dot_without_blas()

    import keras
    from keras import backend as K

    found_major = int(keras.__version__.split(".")[0])
    if found_major != keras_major:
        raise RuntimeError(
            f"this environment has Keras {keras.__version__}, not Keras {keras_major}: "
            f"start the worker from the Keras {keras_major} Theano environment"
        )
    if K.backend() != "theano":
        raise RuntimeError(f"Keras loaded the {K.backend()!r} backend instead of theano")
    # keras.json in the user's home may say otherwise; these change numbers without
    # appearing in model.json, so pin them to Keras's defaults.
    K.set_floatx("float32")
    K.set_epsilon(1e-7)
    # Inference mode everywhere: a constant learning phase also keeps Dropout and
    # BatchNormalization graphs free of the keras_learning_phase input.
    K.set_learning_phase(0)


def _batched_dot_without_blas() -> None:
    """Theano's BatchedDot (K.batch_dot: LocallyConnected1D/2D, Dot, Keras 1 merge 'dot') compiles C code
    that calls BLAS's sgemm_ directly, which the empty blas__ldflags leaves unresolved: the compiled
    module fails to import. Without its C code Theano runs the op's own numpy implementation (perform),
    the same product."""
    from theano.graph.utils import MethodNotDefined
    from theano.tensor.blas import BatchedDot

    def no_c_code(self, *args, **kwargs):
        raise MethodNotDefined("BatchedDot without BLAS ldflags: numpy's perform")

    BatchedDot.c_code = no_c_code


def h5py2_view(group):
    """`group` (an open h5py 3 File or Group) as Keras 1/2 expect it from h5py 2.

    h5py 3 returns variable-length string attributes as `str` (and arrays of them with
    dtype object) where h5py 2 returned `bytes`; Keras calls `.decode('utf8')` on them.
    Files written through h5py 2 hold fixed-length strings, which h5py 3 still returns as
    bytes; those pass through unchanged. Datasets are returned as they are.
    """
    return _H5py2Group(group)


class _H5py2Group:
    def __init__(self, group):
        self._group = group
        self.attrs = _H5py2Attributes(group.attrs)

    def __contains__(self, name: str) -> bool:
        return name in self._group

    def __getitem__(self, name: str):
        import h5py

        item = self._group[name]
        return _H5py2Group(item) if isinstance(item, h5py.Group) else item


class _H5py2Attributes:
    def __init__(self, attrs):
        self._attrs = attrs

    def __contains__(self, name: str) -> bool:
        return name in self._attrs

    def __getitem__(self, name: str):
        import numpy as np

        value = self._attrs[name]
        if isinstance(value, str):
            return value.encode("utf8")
        if isinstance(value, np.ndarray) and value.dtype == object:
            return np.array([v.encode("utf8") if isinstance(v, str) else v for v in value])
        return value
