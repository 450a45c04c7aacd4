"""Writing a (repaired) model in its framework's own format, loadable without kdiff."""
from __future__ import annotations

from pathlib import Path


def save_model(keras, model, directory: str) -> list[Path]:
    """Keras 3: ``model.keras`` (architecture and weights) plus ``model.weights.h5``.
    tf_keras: ``model.json`` plus ``weights.h5`` (HDF5), as ``model_from_json`` and
    ``load_weights`` read them."""
    from backends.modern_keras.layer_changes import written_form

    folder = Path(directory)
    model = written_form(keras, model)
    if keras.__name__ == "tf_keras":
        architecture, weights = folder / "model.json", folder / "weights.h5"
        architecture.write_text(model.to_json())
        model.save_weights(str(weights))
        return [architecture, weights]
    archive, weights = folder / "model.keras", folder / "model.weights.h5"
    model.save(archive)
    model.save_weights(weights)
    return [archive, weights]
