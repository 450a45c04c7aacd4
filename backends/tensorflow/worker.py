from backends.modern_keras.worker import ModernKerasWorker


class Worker(ModernKerasWorker):
    backend = "tensorflow"
    keras_backend = "tensorflow"

    def _versions_impl(self) -> dict:
        import tensorflow as tf

        return {"keras": self.keras.__version__, "tensorflow": tf.__version__}

    def _device_impl(self) -> str:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu ({len(gpus)})" if gpus else "cpu"
