"""Finding checkpoint files in a local folder or a Hub repo (errors name what is missing), and the model card."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from .errors import CheckpointError


def resolve_file(
    path_or_repo: str | os.PathLike,
    filename: str,
    subfolder: str | None = None,
    *,
    required: bool = True,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | None = None,
    **_: Any,
) -> str | None:
    """Local path of `filename` from a folder or a Hub repo id; None if absent and not required."""
    path = os.fspath(path_or_repo)
    local_dir = os.path.join(path, subfolder) if subfolder else path
    if os.path.isdir(path):
        candidate = os.path.join(local_dir, filename)
        if os.path.isfile(candidate):
            return candidate
        if required:
            present = sorted(os.listdir(local_dir)) if os.path.isdir(local_dir) else []
            raise CheckpointError(f"{filename} not found in {local_dir} (it contains: {present or 'nothing'})")
        return None
    if path.startswith((".", "/", "~")) or os.sep in path and path.count("/") > 1:
        raise CheckpointError(f"{path} is not a folder on this machine, nor a Hub repo id like 'owner/name'")
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError(f"{path} is not a local folder and huggingface_hub is not installed") from exc
    try:
        return hf_hub_download(path, filename, subfolder=subfolder, revision=revision, token=token, cache_dir=cache_dir)
    # LocalEntryNotFoundError subclasses EntryNotFoundError: it must come first, or "offline and not cached"
    # would be reported as "the repo has no such file".
    except LocalEntryNotFoundError:
        if not required:
            return None
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub is not reachable"
        raise CheckpointError(
            f"cannot fetch {filename} of Hub repo {path!r}: {why} and the file is not in the local cache. "
            "Download the adapter where there is network (or unset HF_HUB_OFFLINE), or pass a local folder."
        ) from None
    except EntryNotFoundError:
        if required:
            raise CheckpointError(f"{filename} not found in Hub repo {path!r}; check the repo id, subfolder and revision") from None
        return None
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"Hub repo {path!r} not found, or it is private/gated and no valid token was given; check the id or pass token="
        ) from None
    except HFValidationError:
        raise CheckpointError(f"{path!r} is neither a folder on this machine nor a valid Hub repo id like 'owner/name'") from None
    except (HfHubHTTPError, OSError) as exc:
        raise CheckpointError(f"cannot fetch {filename} of Hub repo {path!r}: {exc}") from None


MODEL_CARD_NAME = "README.md"
_PLAIN_YAML = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/:]*")


def _yaml_scalar(value: str) -> str:
    return value if _PLAIN_YAML.fullmatch(value) and ": " not in value else json.dumps(value)


def write_model_card(
    directory: str | os.PathLike,
    *,
    method: str,
    base_model: str | None,
    task_type: str | None,
    transformers_model: bool,
    version: str,
) -> str | None:
    """Write README.md with the Hub front matter peft writes (library_name, tags, base_model, pipeline_tag).

    The Hub uses it to list the adapter under its base model. An existing README.md is the user's card and
    is left alone (returns None). A local base path is left out of `base_model`: the Hub only accepts repo ids.
    """
    path = os.path.join(os.fspath(directory), MODEL_CARD_NAME)
    if os.path.exists(path):
        return None
    hub_id = base_model if base_model and not base_model.startswith((".", "/", "~")) and not os.path.isdir(base_model) else None
    tags = sorted([method.lower(), *(["transformers"] if transformers_model else []), *([f"base_model:adapter:{hub_id}"] if hub_id else [])])
    meta = [*([f"base_model: {_yaml_scalar(hub_id)}"] if hub_id else []), "library_name: peft"]
    if task_type == "CAUSAL_LM":
        meta.append("pipeline_tag: text-generation")
    meta += ["tags:", *(f"- {_yaml_scalar(t)}" for t in tags)]
    title = f"{method} adapter for {base_model}" if base_model else f"{method} adapter"
    body = f"""# {title}

Trained with PEFT Studio (`peft_core`). The files use the PEFT checkpoint format, so the adapter loads with
`peft` as well as with `peft_core`:

```python
from peft_core import PeftModel  # or: from peft import PeftModel
model = PeftModel.from_pretrained(base_model, "<this folder or repo id>")
```

### Framework versions

- peft_core {version} (PEFT checkpoint format)
"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("---\n" + "\n".join(meta) + "\n---\n\n" + body)
    return path
