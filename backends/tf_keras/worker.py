from backends.modern_keras.worker import ModernKerasWorker


class Worker(ModernKerasWorker):
    backend = "tf-keras"
    keras_module = "tf_keras"

    def _versions_impl(self) -> dict:
        import tensorflow as tf

        return {"tf_keras": self.keras.__version__, "tensorflow": tf.__version__}

    def _custom_objects_keras_impl(self):
        return self.keras

    def _device_impl(self) -> str:
        from backends.tf_keras.capture import device

        return device()
