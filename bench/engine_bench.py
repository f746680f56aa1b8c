"""peft_core LoRA against peft LoRA: training throughput, peak memory and a loss-match gate.

One Llama-3.2-1B-shaped model built from a LlamaConfig with random weights (speed does not depend on the
values), bf16, SDPA attention, LoRA r=16 alpha=32 dropout 0 on all linear layers, fused AdamW lr 2e-4,
labels = inputs, batch 8 x 2048, with gradient checkpointing off and on. Only the engine changes.

QLoRA arms (`--quant nf4`): the same bf16 model, built on the device, then every linear layer but the
output head is swapped for a bitsandbytes Linear4bit quantized in memory (nf4, double quant, bf16
compute: what loading with BitsAndBytesConfig gives, without a checkpoint on disk), and each engine
runs its own prepare_model_for_kbit_training (freeze, upcast the non-quantized half-precision weights
to fp32, gradient checkpointing with use_reentrant=False when on). `--shape 8b` picks the Llama-3-8B
shape (hidden 4096, intermediate 14336, 32 layers, 32 heads, 8 kv heads, vocab 128256, untied head).

Each (engine, gc) arm runs in its own process (this script re-invokes itself with --worker), in the
order peft_core, peft, peft_core, peft, ... (benchmark_protocol.md section 7). A worker:

1. builds the model on the device from a fixed seed (the same base weights in every process),
2. wraps it with its engine, then loads the shared initial adapter weights: the first peft_core arm
   saves its fresh adapter state dict (PEFT's key format), every later arm of either engine loads it,
3. resets the peak-memory counters, runs `--warmup` discarded steps and `--steps` timed steps (each
   step timed with CUDA events, the whole window with torch.cuda.synchronize around it),
4. optionally profiles two more steps with torch.profiler (first repeat only, after the window),
5. writes one JSON file.

The orchestrator then writes results.json (meta_info, train_info, every arm, a summary and the
correctness gate: mean |delta loss| over the first --gate-steps losses of the two engines, same seed,
same data, same initial adapter) and results.md (table rows), and prints the markdown last.

    python bench/engine_bench.py --out /tmp/bench            # the real thing (needs a CUDA GPU)
    python bench/engine_bench.py --smoke --out /tmp/smoke    # tiny model on the CPU, seconds
    python bench/engine_bench.py --quant nf4 --gc on --shape 8b --batch-size 4 --out /tmp/qlora8b
    python bench/engine_bench.py --smoke --quant nf4 --gc on --out /tmp/qsmoke   # needs bitsandbytes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENGINES = ("peft_core", "peft")
INIT_FILE = "adapter_init.safetensors"
GIB = 1024**3
H200_DENSE_BF16_TFLOPS = 989.4  # benchmark_protocol.md section 6.1 (dense, not the sparse datasheet figure)


@dataclass
class ModelShape:
    vocab_size: int = 128256
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_hidden_layers: int = 16
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    max_position_embeddings: int = 131072
    tie_word_embeddings: bool = True


SHAPES: dict[str, ModelShape] = {
    "1b": ModelShape(),  # Llama-3.2-1B
    "8b": ModelShape(  # Llama-3-8B
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
    ),
}
QUANTS = ("none", "nf4")

SMOKE_SHAPE = ModelShape(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


@dataclass
class BenchConfig:
    shape: ModelShape = field(default_factory=ModelShape)
    batch_size: int = 8
    seq_len: int = 2048
    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"
    lr: float = 2e-4
    dtype: str = "bfloat16"
    quant: str = "none"  # "nf4": nf4 + double quant weights, compute in `dtype` (QLoRA)
    attn_implementation: str = "sdpa"
    warmup: int = 4
    steps: int = 12
    gate_steps: int = 8
    seed: int = 1234
    device: str = "cuda"


# ---------------------------------------------------------------------------------------------- worker


def _now() -> float:
    return time.perf_counter()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _source_hash(package_dir: Path) -> str:
    """sha256 over the package's .py files (path and bytes): pins exactly which engine code ran."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(str(path.relative_to(package_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _matmul_params(shape: ModelShape) -> int:
    """N of the 4N LoRA FLOPs convention: every linear weight except the embedding; the lm_head counts."""
    h, i, kv = shape.hidden_size, shape.intermediate_size, shape.num_key_value_heads
    head_dim = h // shape.num_attention_heads
    attn = 2 * h * h + 2 * h * kv * head_dim
    mlp = 3 * h * i
    return shape.num_hidden_layers * (attn + mlp) + h * shape.vocab_size


def _enable_gc(model: Any) -> None:
    """Non-reentrant checkpointing of every decoder layer; transformers also makes the embedding output
    require grad, so gradients reach the adapters through checkpointed layers. Same call for both engines."""
    kwargs = {"use_reentrant": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _gc_active(model: Any) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return bool(getattr(model, "is_activation_checkpointing", getattr(model, "is_gradient_checkpointing", False)))


def _quantize_linears(model: Any, cfg: BenchConfig) -> int:
    """Swap every nn.Linear except the output head for a bitsandbytes Linear4bit (nf4, double quant,
    compute dtype cfg.dtype, blocksize 64), quantized in memory on the weight's device: the layers that
    `from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...))` produces (it skips
    the head too). Marks the model `is_loaded_in_4bit`, as transformers does, so peft picks its bnb layers
    and its prepare_model_for_kbit_training treats the model as quantized. Returns the number swapped."""
    import bitsandbytes as bnb
    import torch

    compute_dtype = getattr(torch, cfg.dtype)
    head = model.get_output_embeddings()
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or child is head:
                continue
            layer = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute_dtype,
                compress_statistics=True,
                quant_type="nf4",
                quant_storage=torch.uint8,
                device="meta",
            )
            weight = bnb.nn.Params4bit(
                child.weight.data,
                requires_grad=False,
                compress_statistics=True,
                quant_type="nf4",
                quant_storage=torch.uint8,
                module=layer,
            )
            layer.weight = weight.to(child.weight.device)  # quantizes here
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, layer)
            swapped += 1
    model.is_loaded_in_4bit = True
    return swapped


def _prepare_kbit(engine: str, model: Any, gc: bool) -> Any:
    """The engine's own prepare_model_for_kbit_training, with the same arguments on both sides."""
    if engine == "peft_core":
        from peft_core import prepare_model_for_kbit_training
    else:
        from peft import prepare_model_for_kbit_training
    kwargs = {"use_reentrant": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc, gradient_checkpointing_kwargs=kwargs)


def _dtype_census(model: Any) -> dict[str, Any]:
    """Which dtypes the model's parameters are in, by storage class: shows both engines prepared alike."""
    census: dict[str, int] = {}
    for p in model.parameters():
        key = f"{type(p).__name__}:{str(p.dtype).replace('torch.', '')}"
        census[key] = census.get(key, 0) + p.numel()
    return dict(sorted(census.items()))


def _wrap(engine: str, model: Any, cfg: BenchConfig) -> tuple[Any, Any]:
    """(peft model, engine module); the LoraConfig is the same on both sides."""
    kwargs = dict(
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    if engine == "peft_core":
        import peft_core

        return peft_core.get_peft_model(model, peft_core.LoraConfig(**kwargs)), peft_core
    if engine == "peft":
        import peft

        return peft.get_peft_model(model, peft.LoraConfig(**kwargs)), peft
    raise ValueError(f"unknown engine {engine!r}")


def _sync_initial_adapter(engine: str, lib: Any, model: Any, run_dir: Path) -> dict[str, Any]:
    """Make every arm start from the same adapter tensors: the first peft_core arm writes its own initial
    state dict (PEFT keys) to run_dir, every other arm loads it."""
    import torch
    from safetensors.torch import load_file, save_file

    path = run_dir / INIT_FILE
    info: dict[str, Any] = {}
    if not path.exists():
        if engine != "peft_core":
            raise RuntimeError(f"{path} is missing: a peft_core arm must run first and write it")
        state = lib.get_peft_model_state_dict(model)
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path))
        info["initial_adapter"] = "created (peft_core fresh init)"
    else:
        state = load_file(str(path))
        result = lib.set_peft_model_state_dict(model, state)
        unexpected = list(getattr(result, "unexpected_keys", None) or (result[1] if isinstance(result, tuple) else []))
        if unexpected:
            raise RuntimeError(f"{engine} did not take these initial adapter keys: {unexpected[:5]} ...")
        info["initial_adapter"] = f"loaded from {INIT_FILE}"
    live = lib.get_peft_model_state_dict(model)
    if sorted(live) != sorted(state):
        raise RuntimeError(f"{engine} adapter keys differ from the shared initial adapter")
    with torch.no_grad():
        info["initial_adapter_abs_sum"] = float(sum(t.detach().double().abs().sum().item() for t in live.values()))
        info["initial_adapter_matches_file"] = all(
            torch.equal(live[k].detach().cpu().to(state[k].dtype), state[k].cpu()) for k in state
        )
    info["adapter_tensors"] = len(live)
    info["adapter_dtypes"] = sorted({str(t.dtype) for t in live.values()})
    return info


def _profile_steps(model: Any, optim: Any, batches: list[dict[str, Any]], out_file: Path, device: str) -> dict[str, Any]:
    """Two extra steps under torch.profiler: where GPU time goes, how many kernels, how busy the GPU is."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    n = len(batches)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = _now()
    with profile(activities=activities) as prof:
        for batch in batches:
            loss = model(**batch).loss
            loss.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
    wall = _now() - t0
    from torch.autograd import DeviceType

    kernels = 0
    kernel_us = 0.0
    for evt in prof.events():
        if evt.device_type == DeviceType.CUDA:
            kernels += 1
            kernel_us += float(evt.device_time_total)
    sort_key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_key, row_limit=40, max_name_column_width=70)
    out_file.write_text(table)
    return {
        "profiled_steps": n,
        "profiled_wall_s_per_step": wall / n,
        "kernels_per_step": kernels / n,
        "kernel_time_s_per_step": kernel_us / 1e6 / n,
        "gpu_busy_fraction": (kernel_us / 1e6) / wall if wall > 0 else None,
        "table_file": out_file.name,
    }


def run_worker(args: argparse.Namespace) -> None:
    t_start = _now()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5 deprecation notices, on both sides
    cfg = BenchConfig(**json.loads(args.config_json))
    cfg.shape = ModelShape(**cfg.shape) if isinstance(cfg.shape, dict) else cfg.shape
    # peft_core from --engine-src if given, else from the repository this script lives in
    sys.path.insert(0, os.path.abspath(args.engine_src) if args.engine_src else str(Path(__file__).resolve().parent.parent))
    out_dir = Path(args.out)
    arm = f"{args.engine}_gc{int(args.gc)}_r{args.repeat}"

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, LlamaConfig

    if args.engine == "peft_core":
        import peft_core

        engine_version = peft_core.__version__
        engine_file = Path(peft_core.__file__).parent
    else:
        import peft

        engine_version = peft.__version__
        engine_file = Path(peft.__file__).parent
    t_import = _now()

    device = cfg.device
    dtype = getattr(torch, cfg.dtype)
    torch.manual_seed(cfg.seed)
    if device == "cuda":
        torch.cuda.manual_seed_all(cfg.seed)
    llama_cfg = LlamaConfig(**asdict(cfg.shape))
    llama_cfg.use_cache = False
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(llama_cfg, dtype=dtype, attn_implementation=cfg.attn_implementation)
    quant_info: dict[str, Any] | None = None
    if cfg.quant != "none":
        swapped = _quantize_linears(model, cfg)
        model = _prepare_kbit(args.engine, model, args.gc)
        if device == "cuda":
            torch.cuda.empty_cache()  # peft's prepare does this itself; do it for both so reserved memory compares
        import bitsandbytes

        quant_info = {
            "quant": cfg.quant,
            "bitsandbytes": bitsandbytes.__version__,
            "quantized_linears": swapped,
            "param_dtypes_after_prepare": _dtype_census(model),
        }
    elif args.gc:
        _enable_gc(model)
    if device == "cuda":
        torch.cuda.synchronize()
    t_model = _now()

    pmodel, lib = _wrap(args.engine, model, cfg)
    init_info = _sync_initial_adapter(args.engine, lib, pmodel, out_dir)
    pmodel.train()
    trainable = [p for p in pmodel.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in pmodel.parameters())
    adapted = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in pmodel.named_modules() if n.endswith(".lora_A")})
    try:
        optim = torch.optim.AdamW(trainable, lr=cfg.lr, fused=True)
        fused = True
    except (RuntimeError, TypeError):  # fused AdamW needs a supported device; only the CPU smoke may land here
        optim = torch.optim.AdamW(trainable, lr=cfg.lr)
        fused = False
    if device == "cuda":
        torch.cuda.synchronize()
    t_wrap = _now()

    n_steps = cfg.warmup + cfg.steps
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
    batches = []
    for _ in range(n_steps + 2):
        ids = torch.randint(0, cfg.shape.vocab_size, (cfg.batch_size, cfg.seq_len), generator=gen).to(device)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    tokens_per_step = int(batches[0]["attention_mask"].sum().item())  # non-padding tokens (no padding here)
    loss_tokens_per_step = cfg.batch_size * (cfg.seq_len - 1)  # labels shift by one

    mem: dict[str, Any] = {}
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        mem["allocated_after_load_gib"] = torch.cuda.memory_allocated() / GIB
        mem["reserved_after_load_gib"] = torch.cuda.memory_reserved() / GIB

    losses: list[Any] = []
    step_ms: list[float] = []
    events: list[tuple[Any, Any]] = []
    t_first_step = None
    window_s = None
    t_window = 0.0
    for i in range(n_steps):
        if i == cfg.warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            t_window = _now()
        if device == "cuda":
            ev_start, ev_end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev_start.record()
        else:
            t_step = _now()
        loss = pmodel(**batches[i]).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        if device == "cuda":
            ev_end.record()
            if i >= cfg.warmup:
                events.append((ev_start, ev_end))
        elif i >= cfg.warmup:
            step_ms.append((_now() - t_step) * 1e3)
        if i == 0:
            if device == "cuda":
                torch.cuda.synchronize()
            t_first_step = _now()
    if device == "cuda":
        torch.cuda.synchronize()
    window_s = _now() - t_window
    if device == "cuda":
        step_ms = [a.elapsed_time(b) for a, b in events]
        mem["max_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        mem["max_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
        mem["max_allocated_minus_load_gib"] = mem["max_allocated_gib"] - mem["allocated_after_load_gib"]
    loss_values = [float(x.item()) for x in losses]

    profile_info = None
    if args.profile:
        profile_info = _profile_steps(pmodel, optim, batches[n_steps : n_steps + 2], out_dir / f"profile_{arm}.txt", device)

    median_s = statistics.median(step_ms) / 1e3 if step_ms else float("nan")
    matmul_n = _matmul_params(cfg.shape)
    tok_s = tokens_per_step / median_s if median_s > 0 else None
    result = {
        "arm": arm,
        "engine": args.engine,
        "engine_version": engine_version,
        "engine_path": str(engine_file),
        "engine_source_sha256_16": _source_hash(engine_file) if args.engine == "peft_core" else None,
        "gc": bool(args.gc),
        "gc_active": _gc_active(model),
        "repeat": args.repeat,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "fused_adamw": fused,
        "quant": quant_info,
        "n_adapted_modules": len(adapted),
        "trainable_params": n_trainable,
        "total_params": n_total,
        **init_info,
        "tokens_per_step": tokens_per_step,
        "loss_tokens_per_step": loss_tokens_per_step,
        "warmup_steps": cfg.warmup,
        "timed_steps": len(step_ms),
        "step_ms": step_ms,
        "step_ms_median": median_s * 1e3,
        "step_ms_p90": _percentile(step_ms, 0.9),
        "step_ms_min": min(step_ms) if step_ms else None,
        "window_s": window_s,
        "tokens_per_s": tok_s,
        "tokens_per_s_window": tokens_per_step * len(step_ms) / window_s if window_s else None,
        "mfu_4n": (4 * matmul_n * tok_s / (H200_DENSE_BF16_TFLOPS * 1e12)) if (tok_s and device == "cuda") else None,
        "memory": mem,
        "losses": loss_values,
        "timing_s": {
            "import": t_import - t_start,
            "model_build": t_model - t_import,
            "adapter_inject_and_optimizer": t_wrap - t_model,
            "first_step": (t_first_step - t_wrap) if t_first_step else None,
            "time_to_first_step": (t_first_step - t_start) if t_first_step else None,
        },
        "profile": profile_info,
    }
    (out_dir / f"arm_{arm}.json").write_text(json.dumps(result, indent=1))
    print(
        f"[{arm}] {tok_s:,.0f} tok/s  median {median_s * 1e3:.1f} ms  p90 {result['step_ms_p90']:.1f} ms  "
        f"peak alloc {mem.get('max_allocated_gib', float('nan')):.1f} GiB  reserved {mem.get('max_reserved_gib', float('nan')):.1f} GiB  "
        f"losses {[round(x, 4) for x in loss_values[: cfg.gate_steps]]}",
        flush=True,
    )


# ---------------------------------------------------------------------------------------------- orchestrator


def _git(*cmd: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *cmd], capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _nvidia_smi() -> dict[str, str] | None:
    try:
        line = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            .stdout.strip()
            .splitlines()[0]
        )
        name, driver, memory = (s.strip() for s in line.split(","))
        cuda = None
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
        for token in header.split("|"):
            if "CUDA Version" in token:
                cuda = token.split("CUDA Version:")[-1].strip()
        return {"name": name, "driver": driver, "memory_total": memory, "driver_cuda_version": cuda}
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


def _versions(engine_src: str | None) -> dict[str, Any]:
    """Package versions without importing torch here (the parent never touches the GPU)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "safetensors", "bitsandbytes"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    root = Path(engine_src) if engine_src else Path(__file__).resolve().parent.parent
    out["peft_core_source"] = str(root / "peft_core")
    if (root / "peft_core").is_dir():
        out["peft_core_source_sha256_16"] = _source_hash(root / "peft_core")
    return out


def _gate(a: dict[str, Any] | None, b: dict[str, Any] | None, n: int) -> dict[str, Any] | None:
    if not a or not b:
        return None
    la, lb = a["losses"][:n], b["losses"][:n]
    k = min(len(la), len(lb))
    if k == 0:
        return None
    diffs = [abs(x - y) for x, y in zip(la[:k], lb[:k])]
    mean_abs = sum(diffs) / k
    mean_loss = sum(abs(x) for x in lb[:k]) / k
    return {
        "a": a["arm"],
        "b": b["arm"],
        "steps": k,
        "mean_abs_delta": mean_abs,
        "max_abs_delta": max(diffs),
        "mean_rel_delta": mean_abs / mean_loss if mean_loss else None,
        "losses_a": la[:k],
        "losses_b": lb[:k],
    }


def _summarise(arms: list[dict[str, Any]], cfg: BenchConfig) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for gc in (False, True):
        row: dict[str, Any] = {}
        for engine in ENGINES:
            runs = [r for r in arms if r["engine"] == engine and r["gc"] == gc]
            if not runs:
                continue
            tps = [r["tokens_per_s"] for r in runs]
            mems = [r["memory"] for r in runs]
            row[engine] = {
                "runs": len(runs),
                "tokens_per_s_median": statistics.median(tps),
                "tokens_per_s_min": min(tps),
                "tokens_per_s_max": max(tps),
                "step_ms_median": statistics.median(r["step_ms_median"] for r in runs),
                "step_ms_p90_max": max(r["step_ms_p90"] for r in runs),
                "max_allocated_gib": max(
                    (m.get("max_allocated_gib") for m in mems if m.get("max_allocated_gib") is not None), default=None
                ),
                "max_reserved_gib": max(
                    (m.get("max_reserved_gib") for m in mems if m.get("max_reserved_gib") is not None), default=None
                ),
                "allocated_after_load_gib": mems[0].get("allocated_after_load_gib"),
                "mfu_4n_median": statistics.median(r["mfu_4n"] for r in runs) if all(r["mfu_4n"] for r in runs) else None,
                "n_adapted_modules": sorted({r["n_adapted_modules"] for r in runs}),
                "trainable_params": sorted({r["trainable_params"] for r in runs}),
                "time_to_first_step_s_median": statistics.median(r["timing_s"]["time_to_first_step"] for r in runs),
            }
        if "peft_core" in row and "peft" in row:
            ours, theirs = row["peft_core"], row["peft"]
            row["speed_ratio_peft_core_over_peft"] = ours["tokens_per_s_median"] / theirs["tokens_per_s_median"]
            if ours["max_allocated_gib"] and theirs["max_allocated_gib"]:
                row["allocated_ratio_peft_core_over_peft"] = ours["max_allocated_gib"] / theirs["max_allocated_gib"]
            first = {e: min((r for r in arms if r["engine"] == e and r["gc"] == gc), key=lambda r: r["repeat"]) for e in ENGINES}
            gate = _gate(first["peft_core"], first["peft"], cfg.gate_steps)
            if gate is not None:
                gate["pass_rel_1pct"] = gate["mean_rel_delta"] is not None and gate["mean_rel_delta"] < 0.01
            row["gate"] = gate
            noise = {}
            for engine in ENGINES:
                same = sorted((r for r in arms if r["engine"] == engine and r["gc"] == gc), key=lambda r: r["repeat"])
                if len(same) >= 2:
                    noise[engine] = _gate(same[0], same[1], cfg.gate_steps)
            row["same_engine_rerun"] = noise or None
        summary["gc_on" if gc else "gc_off"] = row
    return summary


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _markdown(summary: dict[str, Any], cfg: BenchConfig, device_label: str) -> str:
    s = cfg.shape
    shape = f"{s.num_hidden_layers}L h{s.hidden_size} i{s.intermediate_size} vocab {s.vocab_size}"
    weights = cfg.dtype
    if cfg.quant != "none":
        weights = f"{cfg.quant} + double quant ({cfg.dtype} compute), each engine's prepare_model_for_kbit_training"
    lines = [
        f"Model: Llama-shaped ({shape}), {weights}, {cfg.attn_implementation}, LoRA r{cfg.r} alpha {cfg.lora_alpha} "
        f"{cfg.target_modules}, batch {cfg.batch_size} x {cfg.seq_len}, fused AdamW lr {cfg.lr}, "
        f"{cfg.warmup} warm-up + {cfg.steps} timed steps, device {device_label}.",
        "",
        "| grad-ckpt | peft_core tok/s | peft tok/s | peft_core / peft | step ms median (p90 worst run) peft_core / peft "
        "| peak alloc GiB peft_core / peft | peak reserved GiB peft_core / peft | MFU 4N peft_core / peft | runs each |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in (("gc_off", "off"), ("gc_on", "on")):
        row = summary.get(key, {})
        a, b = row.get("peft_core"), row.get("peft")
        if not a or not b:
            continue
        lines.append(
            f"| {label} | {a['tokens_per_s_median']:,.0f} | {b['tokens_per_s_median']:,.0f} | {row['speed_ratio_peft_core_over_peft']:.3f} "
            f"| {a['step_ms_median']:.1f} ({a['step_ms_p90_max']:.1f}) / {b['step_ms_median']:.1f} ({b['step_ms_p90_max']:.1f}) "
            f"| {_fmt(a['max_allocated_gib'], '.2f')} / {_fmt(b['max_allocated_gib'], '.2f')} "
            f"| {_fmt(a['max_reserved_gib'], '.2f')} / {_fmt(b['max_reserved_gib'], '.2f')} "
            f"| {_pct(a['mfu_4n_median'])} / {_pct(b['mfu_4n_median'])} "
            f"| {a['runs']} / {b['runs']} |"
        )
    lines += [
        "",
        "| grad-ckpt | gate: first N losses, peft_core vs peft | mean abs delta loss | max abs delta | mean rel delta | pass (< 1%) | same-engine rerun mean abs delta (peft_core; peft) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in (("gc_off", "off"), ("gc_on", "on")):
        row = summary.get(key, {})
        gate = row.get("gate")
        if not gate:
            continue
        rerun = row.get("same_engine_rerun") or {}
        noise = "; ".join(_fmt((rerun.get(e) or {}).get("mean_abs_delta"), ".2e") for e in ENGINES)
        lines.append(
            f"| {label} | N={gate['steps']} | {gate['mean_abs_delta']:.2e} | {gate['max_abs_delta']:.2e} "
            f"| {_fmt(gate['mean_rel_delta'], '.2e')} | {'yes' if gate['pass_rel_1pct'] else 'NO'} | {noise} |"
        )
    return "\n".join(lines) + "\n"


def run_orchestrator(args: argparse.Namespace) -> int:
    t0 = _now()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if (out / INIT_FILE).exists():
        (out / INIT_FILE).unlink()
    cfg = BenchConfig(shape=SHAPES[args.shape], quant=args.quant)
    if args.smoke:
        cfg = BenchConfig(
            shape=SMOKE_SHAPE, batch_size=2, seq_len=32, warmup=0, steps=2, gate_steps=2, device="cpu", quant=args.quant
        )
    for name in ("warmup", "steps", "gate_steps", "batch_size", "seq_len"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 2)
    gcs = [g == "on" for g in args.gc.split(",")]
    config_json = json.dumps(asdict(cfg))

    meta = {
        "date": args.date or time.strftime("%Y-%m-%d"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "gpu": _nvidia_smi() if cfg.device == "cuda" else None,
        "versions": _versions(args.engine_src),
        "peft_core_commit": args.engine_commit or _git("rev-parse", "--short", "HEAD"),
        "host": platform.node(),
    }
    print(f"meta: {json.dumps(meta)}", flush=True)

    arms: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    skipped: list[str] = []
    pair_seconds: dict[bool, float] = {}
    for rep in range(repeats):
        for gc in gcs:
            elapsed = _now() - t0
            estimate = pair_seconds.get(gc, 0.0)
            if rep > 0 and elapsed + estimate * 1.1 > args.budget_s:
                skipped.append(
                    f"repeat {rep} gc={'on' if gc else 'off'} (elapsed {elapsed:.0f} s + pair ~{estimate:.0f} s > budget {args.budget_s} s)"
                )
                print(f"skip: {skipped[-1]}", flush=True)
                continue
            t_pair = _now()
            for engine in ENGINES:
                left = args.budget_s + args.grace_s - (_now() - t0)
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker",
                    "--engine",
                    engine,
                    "--gc",
                    "on" if gc else "off",
                    "--repeat",
                    str(rep),
                    "--out",
                    str(out),
                    "--config-json",
                    config_json,
                ]
                if args.engine_src:
                    cmd += ["--engine-src", args.engine_src]
                if args.profile and rep == 0:
                    cmd += ["--profile"]
                t_arm = _now()
                try:
                    proc = subprocess.run(cmd, timeout=max(left, 30), env={**os.environ, "PYTHONUNBUFFERED": "1"})
                    rc = proc.returncode
                except subprocess.TimeoutExpired:
                    rc = "timeout"
                arm_file = out / f"arm_{engine}_gc{int(gc)}_r{rep}.json"
                if rc == 0 and arm_file.exists():
                    arms.append(json.loads(arm_file.read_text()))
                else:
                    failures.append({"engine": engine, "gc": gc, "repeat": rep, "rc": rc, "seconds": _now() - t_arm})
                    print(f"FAILED: {failures[-1]}", flush=True)
            pair_seconds[gc] = max(pair_seconds.get(gc, 0.0), _now() - t_pair)

    summary = _summarise(arms, cfg)
    device_label = (meta["gpu"] or {}).get("name") if cfg.device == "cuda" else "cpu (smoke)"
    markdown = _markdown(summary, cfg, device_label or cfg.device)
    result = {
        "meta_info": meta,
        "train_info": asdict(cfg) | {"repeats_requested": repeats, "order": "peft_core, peft alternating per gc setting"},
        "summary": summary,
        "arms": arms,
        "failures": failures,
        "skipped": skipped,
        "wall_s": _now() - t0,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    profiles = sorted(out.glob("profile_*.txt"))
    if profiles:  # one file, so a run that can fetch only a few files gets them all
        (out / "profiles.txt").write_text("".join(f"===== {p.stem} =====\n{p.read_text()}\n" for p in profiles))
    (out / "results.md").write_text(markdown)
    print(markdown, flush=True)
    print(f"wall {result['wall_s']:.0f} s, {len(arms)} arms, {len(failures)} failed, {len(skipped)} pairs skipped", flush=True)
    return 1 if failures or not arms else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for results.json, results.md, per-arm JSON and profiles")
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU, 2 steps per arm, one repeat")
    p.add_argument("--repeats", type=int, default=None, help="runs per (engine, gc) arm (default 2; smoke 1)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--gate-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--gc", default="off,on", help="comma list of gradient-checkpointing settings: off,on")
    p.add_argument("--shape", choices=sorted(SHAPES), default="1b", help="model shape (ignored with --smoke)")
    p.add_argument("--quant", choices=QUANTS, default="none", help="nf4: QLoRA (bitsandbytes 4-bit base layers)")
    p.add_argument("--budget-s", type=float, default=480.0, help="no new repeat pair starts past this many seconds")
    p.add_argument("--grace-s", type=float, default=60.0, help="a running worker is killed this long after the budget")
    p.add_argument("--profile", action="store_true", help="torch.profiler over 2 extra steps in each first-repeat arm")
    p.add_argument(
        "--engine-src", default=None, help="folder holding the peft_core package to benchmark (default: the import path)"
    )
    p.add_argument("--engine-commit", default=None, help="peft_core commit to record when git is not available")
    p.add_argument("--date", default=None, help="date to record (default: today)")
    # internal: one arm
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--config-json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.gc = args.gc == "on"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    return run_orchestrator(args)


if __name__ == "__main__":
    sys.exit(main())
