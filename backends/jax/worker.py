from backends.modern_keras.worker import ModernKerasWorker


class Worker(ModernKerasWorker):
    backend = "jax"
    keras_backend = "jax"

    def _versions_impl(self) -> dict:
        from backends.jax.capture import versions

        return versions(self.keras)

    def _device_impl(self) -> str:
        from backends.jax.capture import device

        return device()
