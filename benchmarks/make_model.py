"""Write a MobileNetV2 (or ResNet50; random weights, seeded) as a Keras 3 .keras file plus a batch-8 sample.

Run inside a kdiff Keras 3 environment:
``python make_model.py OUT_DIR [--size 96] [--batch 8] [--model mobilenetv2|resnet50]``."""
import argparse
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402
import numpy as np  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--size", type=int, default=96)
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--model", choices=("mobilenetv2", "resnet50"), default="mobilenetv2")
args = parser.parse_args()
keras.utils.set_random_seed(0)
application = {"mobilenetv2": keras.applications.MobileNetV2, "resnet50": keras.applications.ResNet50}[args.model]
model = application(weights=None, input_shape=(args.size, args.size, 3))
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
model.save(out / "model.keras")
np.save(out / "sample.npy", np.random.default_rng(0).standard_normal((args.batch, args.size, args.size, 3)).astype("float32"))
print(len(model.layers))
