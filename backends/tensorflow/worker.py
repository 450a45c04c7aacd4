from backends.modern_keras.worker import ModernKerasWorker


class Worker(ModernKerasWorker):
    backend = "tensorflow"
    keras_backend = "tensorflow"

    def _versions_impl(self) -> dict:
        from backends.tensorflow.capture import versions

        return versions(self.keras)

    def _device_impl(self) -> str:
        from backends.tensorflow.capture import device

        return device()
