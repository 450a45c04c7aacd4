"""What the in-job probe (kdiff.probe) asks of a backend's capture module
(``backends/<backend>/capture.py``, found through ``backends.registry``): one function,
``capture(model, loss)``, giving an object with ``input_names``, ``output_names``, ``backend``,
``live_metrics(xs, ys)``, ``model_hash()`` and ``snapshot(xs, ys, step, coordinator_has)``
(the snapshot message: kdiff.protocol.snapshot). A model or batch it cannot capture raises
``CaptureError``, which the probe reports to the coordinator, never to the job."""
from __future__ import annotations


class CaptureError(Exception):
    """The model or batch is one the probe cannot capture (said once, to the coordinator)."""
