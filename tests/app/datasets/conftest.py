"""The demo model's folder and tokenizer (built once into pytest's cache, as for the trainer's tests)."""

from tests.worker.training.conftest import data_dir, demo_folder, demo_tokenizer  # noqa: F401
