"""kdiff's probe, for attaching kdiff to a live training run (``kdiff attach ENDPOINT``).

Importable in the training job's own environment with nothing beyond numpy and pyzmq; the
job's framework is only used, never imported, by the probe::

    model.fit(x, y, callbacks=[kdiff.probe.KerasProbe("tcp://127.0.0.1:5557")])   # any Keras 3 backend

    probe = kdiff.probe.Probe(model, "tcp://127.0.0.1:5557")   # a loop of your own
    for batch in batches:
        probe.step(batch)         # at the start of each step, with the batch it trains on
        model.train_on_batch(*batch)

Any address but loopback needs CURVE keys: ``kdiff keys DIR``, then ``keys=ServerKeys.load(DIR)``.
"""
from kdiff.probe.keras_callback import KerasProbe
from kdiff.protocol.keys import ClientKeys, ServerKeys
from kdiff.probe.probe import Probe

__all__ = ["Probe", "KerasProbe", "ServerKeys", "ClientKeys"]
