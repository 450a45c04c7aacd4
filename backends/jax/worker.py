from backends.modern_keras.worker import ModernKerasWorker


class Worker(ModernKerasWorker):
    backend = "jax"
    keras_backend = "jax"

    def _versions_impl(self) -> dict:
        import jax

        return {"keras": self.keras.__version__, "jax": jax.__version__}

    def _device_impl(self) -> str:
        import jax

        return jax.default_backend()
