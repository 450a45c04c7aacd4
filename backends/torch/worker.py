from backends.modern_keras.worker import ModernKerasWorker


class Worker(ModernKerasWorker):
    backend = "torch"
    keras_backend = "torch"

    def _versions_impl(self) -> dict:
        import torch

        return {"keras": self.keras.__version__, "torch": torch.__version__}

    def _device_impl(self) -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
