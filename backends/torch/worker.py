from backends.modern_keras.worker import ModernKerasWorker


class Worker(ModernKerasWorker):
    backend = "torch"
    keras_backend = "torch"

    def _versions_impl(self) -> dict:
        from backends.torch.capture import versions

        return versions(self.keras)

    def _device_impl(self) -> str:
        from backends.torch.capture import device

        return device()
