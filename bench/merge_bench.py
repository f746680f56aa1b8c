"""Peak memory of merging a LoRA into a saved model: shard-by-shard (peft_core.merge_to_disk) against
loading the whole model and calling merge_and_unload (what peft users do), each in its own process.

    python bench/merge_bench.py [--hidden 1024 --layers 8 --vocab 32000 --shard 100MB]

Measures each process's peak resident memory (VmHWM) and wall time, and checks that both merged
folders give the same logits. Runs on CPU: memory, not speed, is the point.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> int:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries the parent's peak
    across exec into it, which would hide the child's own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


class AnonSampler:
    """Samples RssAnon (heap memory, without file pages that safetensors maps and the kernel can drop)
    every few milliseconds; its peak is the memory a merge really needs."""

    def __init__(self, interval: float = 0.005):
        import threading

        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            self._stop.wait(interval)

    def __enter__(self) -> AnonSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def build(work: Path, hidden: int, layers: int, vocab: int, shard: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import peft_core

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=hidden // 128, max_position_embeddings=256,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(work / "base", max_shard_size=shard)
    peft_model = peft_core.get_peft_model(model, peft_core.LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(work / "adapter")


def arm(name: str, work: Path) -> None:
    """Runs inside a fresh process: one merge, then prints peak RSS."""
    start = time.perf_counter()
    with AnonSampler() as anon:
        _merge(name, work)
    print(json.dumps({"arm": name, "peak_rss_mib": peak_rss_mib(), "peak_anon_mib": round(anon.peak_kib / 1024), "seconds": round(time.perf_counter() - start, 1)}))


def _merge(name: str, work: Path) -> None:
    if name == "sharded":
        from peft_core.merge_to_disk import merge_adapter_to_disk

        merge_adapter_to_disk(work / "base", work / "adapter", work / "merged-sharded")
    else:
        from transformers import AutoModelForCausalLM

        import peft_core

        model = AutoModelForCausalLM.from_pretrained(work / "base")
        merged = peft_core.PeftModel.from_pretrained(model, work / "adapter").merge_and_unload()
        merged.save_pretrained(work / "merged-in-memory", max_shard_size="100MB")


def baseline() -> None:
    """Peak RSS of a process that only imports torch, transformers and peft_core (the floor)."""
    import transformers  # noqa: F401

    import peft_core  # noqa: F401
    from peft_core import merge_to_disk  # noqa: F401

    with AnonSampler() as anon:
        time.sleep(0.05)
    print(json.dumps({"arm": "imports only", "peak_rss_mib": peak_rss_mib(), "peak_anon_mib": round(anon.peak_kib / 1024), "seconds": 0}))


def same_logits(work: Path) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(work / "merged-sharded")(ids).logits
        b = AutoModelForCausalLM.from_pretrained(work / "merged-in-memory")(ids).logits
    return (a - b).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--shard", default="100MB")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        baseline() if args.arm == "baseline" else arm(args.arm, Path(args.work))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build(work, args.hidden, args.layers, args.vocab, args.shard)
        size = sum(f.stat().st_size for f in (work / "base").glob("*.safetensors"))
        results = []
        for name in ("baseline", "sharded", "in-memory"):
            out = subprocess.run([sys.executable, __file__, "--arm", name, "--work", str(work)], capture_output=True, text=True, cwd=ROOT, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps({"model_bytes": size, "results": results, "max_abs_logit_diff": same_logits(work)}, indent=2))


if __name__ == "__main__":
    main()
