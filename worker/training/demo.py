"""The built-in demo model: a tiny Llama-style chat model built offline, in seconds, on a CPU.

Why it exists: the studio must be useful on a laptop with no network and no GPU; a demo run's loss must
visibly fall within about a minute. So the demo base model is built here, from nothing:

1. a byte-level BPE tokenizer (`tokenizers`, 512 tokens) trained on text of the demo world
   (demo_tasks.py), saved as a PreTrainedTokenizerFast with a ChatML chat template
   (<|im_start|>role\\n...<|im_end|>) and <|im_end|> as EOS, so generation stops after a reply;
2. a small LlamaForCausalLM (see RECIPE), randomly initialised with a fixed seed;
3. a brief pre-training (RECIPE.pretrain_steps full-parameter steps) on plain "Q: ... A: ..." text of
   the same world, drawn with a different seed from the demo dataset. The base therefore knows the
   words and the answers but has never seen the chat markers: fine-tuning on the demo dataset teaches
   it the chat format, and its loss falls from ~4.5 quickly, which is what a demo should show. A
   random-init base barely moves at LoRA's usual learning rate (the loss creeps from 6.3 to 5.9 in 300
   steps), so the pre-training is worth its few seconds.

The result is a normal transformers folder (config.json, model.safetensors, tokenizer files) plus
demo_build.json, cached under <data dir>/demo-model/<fingerprint>/. The fingerprint covers the recipe,
this file's BUILD_VERSION and the task generator, so a change rebuilds and repeated runs reuse it. The
build is seeded and deterministic on one machine. It is written to a temporary folder and renamed into
place, so two workers building at once cannot leave a half-written model.

    python -m worker.training.demo [--data-dir DIR] [--force]    # build (or find) it and print where
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import demo_tasks
from .schedule import lr_at, warmup_steps

BUILD_VERSION = 1  # bump when the build code changes what it produces
PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class DemoRecipe:
    vocab_size: int = 512  # byte-level BPE: 256 bytes + 3 specials + merges of the demo world's words
    hidden_size: int = 128
    intermediate_size: int = 344
    num_layers: int = 4
    num_heads: int = 4  # head_dim 32
    num_kv_heads: int = 4
    max_positions: int = 1024
    pretrain_steps: int = 150
    pretrain_batch: int = 16  # sequences per step
    pretrain_pairs: int = 2  # Q/A pairs per sequence (~56 tokens)
    pretrain_lr: float = 3e-3
    tokenizer_texts: int = 4000  # Q/A pairs and chats the tokenizer is trained on
    seed: int = 0


RECIPE = DemoRecipe()


def default_data_dir() -> Path:
    """STUDIO_DATA_DIR, else ./data: where the studio keeps what it builds and downloads."""
    return Path(os.environ.get("STUDIO_DATA_DIR", "data"))


def fingerprint(recipe: DemoRecipe = RECIPE) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"build": BUILD_VERSION, **dataclasses.asdict(recipe)}, sort_keys=True).encode())
    digest.update(Path(demo_tasks.__file__).read_bytes())
    return digest.hexdigest()[:12]


def demo_model_dir(data_dir: Path | None = None, recipe: DemoRecipe = RECIPE) -> Path:
    return Path(data_dir or default_data_dir()) / "demo-model" / f"v{BUILD_VERSION}-{fingerprint(recipe)}"


def ensure_demo_model(data_dir: Path | None = None, *, recipe: DemoRecipe = RECIPE, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """The demo model's folder, building it first if this data dir does not have it yet."""
    target = demo_model_dir(data_dir, recipe)
    if (target / "demo_build.json").is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the demo model once (about 20 s on a laptop CPU) in {target}")
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        info = build_demo_model(tmp, recipe, log)
        if force and target.exists():
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"demo model ready: {info['parameters']:,} parameters, pre-training loss {info['pretrain_loss']:.2f}, built in {info['seconds']:.0f} s")
    return target


# ------------------------------------------------------------------------------------------- building


def _corpus(recipe: DemoRecipe) -> tuple[list[str], list[str]]:
    """(pre-training sequences, tokenizer texts), seeded apart from the demo dataset's seed."""
    rng = random.Random(recipe.seed + 1)
    sequences = [demo_tasks.pretraining_text(rng, recipe.pretrain_pairs) for _ in range(recipe.pretrain_steps * recipe.pretrain_batch)]
    chats = [demo_tasks.chat_example(rng)["messages"] for _ in range(recipe.tokenizer_texts // 4)]
    rendered = ["".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in chat) for chat in chats]
    return sequences, [demo_tasks.pretraining_text(rng, 1) for _ in range(recipe.tokenizer_texts)] + rendered


def build_tokenizer(texts: list[str], recipe: DemoRecipe) -> Any:
    """A byte-level BPE tokenizer (any input text is encodable) with the ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=IM_END, model_max_length=recipe.max_positions)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: Any, recipe: DemoRecipe) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_kv_heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(recipe.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def pretrain(model: Any, tokenizer: Any, sequences: list[str], recipe: DemoRecipe, log: Callable[[str], None]) -> float:
    """Full-parameter language modelling on the Q/A text; returns the mean loss of the last 10 steps."""
    torch.manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.pretrain_lr, weight_decay=0.0)
    warmup = warmup_steps(recipe.pretrain_steps, 0.1)
    losses: list[float] = []
    model.train()
    for step in range(recipe.pretrain_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, peak=recipe.pretrain_lr, total_steps=recipe.pretrain_steps, warmup=warmup, kind="cosine")
        chunk = sequences[step * recipe.pretrain_batch : (step + 1) * recipe.pretrain_batch]
        batch = tokenizer(chunk, padding=True, return_tensors="pt")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            log(f"demo pre-training step {step + 1}/{recipe.pretrain_steps}: loss {loss.item():.2f}")
    model.eval()
    tail = losses[-10:]
    return sum(tail) / len(tail)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Build on one CPU thread: the same bits however many cores the machine has, and no threads
    spin-waiting on each other when it is busy (on a loaded 2-core box, 2 threads took 5x longer than 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_demo_model(out: Path, recipe: DemoRecipe = RECIPE, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build tokenizer and model into `out` (a transformers folder) and describe the build."""
    started = time.perf_counter()
    sequences, tokenizer_texts = _corpus(recipe)
    tokenizer = build_tokenizer(tokenizer_texts, recipe)
    with _one_thread():
        model = build_model(tokenizer, recipe)
        loss = pretrain(model, tokenizer, sequences, recipe, log) if recipe.pretrain_steps else float("nan")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "recipe": dataclasses.asdict(recipe),
        "build_version": BUILD_VERSION,
        "fingerprint": fingerprint(recipe),
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretrain_loss": loss,
        "seconds": time.perf_counter() - started,
        "torch": torch.__version__,
    }
    (out / "demo_build.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.training.demo", description="Build the studio's offline demo model.")
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory (default: $STUDIO_DATA_DIR or ./data)")
    parser.add_argument("--force", action="store_true", help="rebuild even if it is already there")
    args = parser.parse_args(argv)
    folder = ensure_demo_model(args.data_dir, force=args.force)
    info = json.loads((folder / "demo_build.json").read_text())
    print(f"demo model: {folder.resolve()}")
    print(f"  {info['parameters']:,} parameters, pre-training loss {info['pretrain_loss']:.3f}, built in {info['seconds']:.1f} s")


if __name__ == "__main__":
    main()
