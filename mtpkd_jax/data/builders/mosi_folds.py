"""CMU-MOSI's standard folds: the CMU-MultimodalSDK's train, validation and test video ids.

Read from ``mosi_folds.json`` beside this module. The builder
(:mod:`~mtpkd_jax.data.builders.mosi`) splits the videos by them, and the dummy writer
(:mod:`~mtpkd_jax.data.builders.dummy.mosi`) takes its video ids from them.
"""

import json
from pathlib import Path

_FOLDS = json.loads((Path(__file__).parent / "mosi_folds.json").read_text())
FOLDS = {"train": _FOLDS["train"], "val": _FOLDS["valid"], "test": _FOLDS["test"]}
