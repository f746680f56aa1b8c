"""Where a base model's tokenizer files are, without torch or transformers (for the web process's inspector).

    demo          the demo model's folder under <data dir>/demo-model/ (the worker builds it on the first run;
                  the newest complete build is used)
    local folder  read directly
    Hub id        the local huggingface_hub cache only (the web process never downloads): a model not cached
                  yet gets a message saying how to fetch its tokenizer files

Loaded tokenizers are cached per folder (and the files' modification times), so showing row after row is fast.
"""

from __future__ import annotations

import functools
from pathlib import Path

from .rows import DatasetError
from .tokenization import TextTokenizer

DEMO_MODEL = "demo"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json")


def demo_tokenizer_folder(data_dir: Path) -> Path:
    """The newest complete demo-model build under `data_dir`; DatasetError when none was built yet."""
    builds = [p.parent for p in (Path(data_dir) / "demo-model").glob("v*-*/demo_build.json")]
    if not builds:
        raise DatasetError(
            "The demo model's tokenizer is not there yet: the demo model is built on the first run.",
            hint="Start one run with the demo model (or run `python -m worker.training.demo`), then inspect samples again.",
        )
    return max(builds, key=lambda p: (p / "demo_build.json").stat().st_mtime)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()


def hub_tokenizer_folder(repo_id: str) -> Path:
    """The cached snapshot folder holding `repo_id`'s tokenizer.json, from the local Hub cache only."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "tokenizer.json")
    except Exception as exc:  # an id the Hub library refuses (bad characters, ...)
        raise DatasetError(f"{repo_id!r} is not a model folder or a Hugging Face model id: {exc}", hint="Check the base model's name.") from exc
    if not isinstance(found, str):
        raise DatasetError(
            f"The tokenizer files of {repo_id} are not on this machine, and the sample inspector does not download.",
            hint=f"Run `huggingface-cli download {repo_id} tokenizer.json tokenizer_config.json` (or one run with this model), "
            "then inspect samples again.",
        )
    return Path(found).parent


def tokenizer_folder(base_model: str, data_dir: Path) -> Path:
    """The folder whose tokenizer files describe `base_model` (raises DatasetError with what to do)."""
    if base_model == DEMO_MODEL:
        return demo_tokenizer_folder(data_dir)
    folder = Path(base_model).expanduser()
    if folder.is_dir():
        return folder
    if _looks_like_path(base_model):
        raise DatasetError(f"The model folder {base_model} does not exist.", hint="Check the path, or give a Hub model id.")
    return hub_tokenizer_folder(base_model)


def _stamp(folder: Path) -> tuple[float, ...]:
    return tuple((folder / n).stat().st_mtime if (folder / n).is_file() else 0.0 for n in TOKENIZER_FILES)


@functools.lru_cache(maxsize=8)
def _cached(folder: str, stamp: tuple[float, ...]) -> TextTokenizer:
    return TextTokenizer.from_folder(Path(folder))


def load_tokenizer(folder: Path) -> TextTokenizer:
    """The folder's TextTokenizer, loaded once per version of its files."""
    folder = Path(folder).resolve()
    return _cached(str(folder), _stamp(folder))


def tokenizer_for_model(base_model: str, data_dir: Path) -> TextTokenizer:
    return load_tokenizer(tokenizer_folder(base_model, data_dir))
