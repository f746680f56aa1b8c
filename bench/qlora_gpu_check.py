"""LoRA and DoRA on bitsandbytes 4-bit/8-bit layers on a GPU: peft_core against peft, the checks of
tests/peft_core/test_quantized.py (which run on the CPU) on CUDA.

A small Llama built from a LlamaConfig (random weights, fixed seed) is saved once and loaded with a
BitsAndBytesConfig three ways:

    4bit-nf4   nf4, double quant, bf16 compute, non-quantized weights in bf16 (the QLoRA recipe)
    4bit-fp4   fp4, no double quant, fp32 compute, fp32 elsewhere
    8bit       LLM.int8 (threshold 6.0), fp32 elsewhere

For each, with LoRA and with DoRA (r=8, all-linear, non-zero B so the adapter matters):

    outputs           peft_core vs peft logits, same adapter tensors (train mode, dropout 0)
    ckpt_to_peft      peft_core's saved adapter loaded by peft.PeftModel.from_pretrained gives the same logits
    ckpt_from_peft    peft's saved adapter loaded by peft_core.PeftModel.from_pretrained gives the same logits
    merge_vs_peft     merge_and_unload (re-quantizing) next to peft's: ours is no further (RMS over the logits)
                      from the unmerged model than peft's; with fp32 compute the two merged models also agree
                      to 2e-3 as on the CPU. With bf16 weights they need not agree closely: peft's LoRA merge
                      re-quantizes the fp32 sum W + s B A (and leaves that layer's quant_state in fp32), while
                      peft's DoRA merge and both of peft_core's round the sum to the layer's dtype first
    dequantize_merge  merge_and_unload(dequantize=True): dense layers, logits equal those of the adapted model
                      over dequantized base layers (unmerged); for LoRA the merged weight is bit-equal to
                      dequant(W) + s B A rounded to the compute dtype. Also reported: the distance to the adapted
                      quantized model (the same, except for 8-bit on CUDA, whose int8 matmul rounds activations)
and per quantization: unmerge after merge restores the weight up to rounding (B = 0), and adapting a
deep copy leaves the original model untouched. Then QLoRA training (nf4, each engine's
prepare_model_for_kbit_training, gradient checkpointing, 12 AdamW steps on one batch, both engines from
the same initial adapter): the loss falls by > 0.2, frozen weights stay put, the two loss curves agree.

Tolerances: fp32 compute as on the CPU (1e-4 on logits); bf16 compute allows a few bf16 roundings of the
largest logit (2^-5 of it, about 4 units in the last place). `adapter_effect` (how far the adapter moves
the logits) shows each tolerance is far below what a wrong adapter would give. Every number is written
to the JSON file, pass or not.

    python bench/qlora_gpu_check.py --out /tmp/qlora_check.json [--engine-src build/bench_src] [--device cpu]

Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

QUANTS: dict[str, dict[str, Any]] = {
    "4bit-nf4": {"compute": "bfloat16", "double_quant": True, "load_dtype": "bfloat16"},
    "4bit-fp4": {"compute": "float32", "double_quant": False, "load_dtype": "float32"},
    "8bit": {"compute": None, "double_quant": False, "load_dtype": "float32"},
}
# max |logits difference| allowed where the two sides compute the same function: absolute in fp32 (as the
# CPU test), a fraction of the largest |logit| in bf16 (2^-5: about 4 bf16 units in the last place)
OUT_TOL_ABS = {"float32": 1e-4}
OUT_TOL_REL = {"bfloat16": 2**-5}
MERGE_TOL = 2e-3  # merged (re-quantized) models, ours vs peft's, fp32 compute (the CPU test's tolerance)

VARIANTS = {"lora": False, "dora": True}


class Checker:
    def __init__(self, device: str, workdir: Path):
        import torch

        self.torch = torch
        self.device = device
        self.workdir = workdir
        self.results: list[dict[str, Any]] = []
        gen = torch.Generator().manual_seed(7)
        self.input_ids = torch.randint(0, 512, (2, 24), generator=gen).to(device)

    # ------------------------------------------------------------------ helpers
    def record(self, quant: str, check: str, passed: bool, **metrics: Any) -> None:
        row = {"quant": quant, "check": check, "pass": bool(passed), **metrics}
        self.results.append(row)
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        print(f"{'PASS' if passed else 'FAIL'}  {quant:9s} {check:28s} {shown}", flush=True)

    def guarded(self, quant: str, check: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # a crash is a failed check, and the other checks still run
            self.record(quant, check, False, error=f"{type(exc).__name__}: {exc}"[:500], trace=traceback.format_exc()[-2000:])

    def build_base(self) -> Path:
        from transformers import AutoModelForCausalLM, LlamaConfig

        torch = self.torch
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=512,
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            tie_word_embeddings=False,
        )
        model = AutoModelForCausalLM.from_config(config)
        path = self.workdir / "base"
        model.save_pretrained(path)
        return path

    def load(self, quant: str) -> Any:
        from transformers import AutoModelForCausalLM

        from peft_core.quantization import bitsandbytes_config

        torch = self.torch
        spec = QUANTS[quant]
        compute = getattr(torch, spec["compute"]) if spec["compute"] else None
        qconfig = bitsandbytes_config(quant, compute_dtype=compute, double_quant=spec["double_quant"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(
                self.base, quantization_config=qconfig, device_map={"": self.device}, dtype=getattr(torch, spec["load_dtype"])
            )
        return model.train()

    def logits(self, model: Any) -> Any:
        with self.torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model(input_ids=self.input_ids).logits.float()

    def maxdiff(self, a: Any, b: Any) -> float:
        return float((a - b).abs().max().item())

    def rms(self, a: Any, b: Any) -> float:
        return float((a - b).pow(2).mean().sqrt().item())

    @staticmethod
    def tolerance(compute: str, expected: Any) -> float:
        if compute in OUT_TOL_ABS:
            return OUT_TOL_ABS[compute]
        return OUT_TOL_REL[compute] * float(expected.abs().max().item())

    @staticmethod
    def lora_kwargs(**kw: Any) -> dict[str, Any]:
        config = dict(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
        config.update(kw)
        return config

    # ------------------------------------------------------------------ checks
    def adapter_checks(self, quant: str, variant: str) -> None:
        import bitsandbytes as bnb
        import peft

        import peft_core

        compute = QUANTS[quant]["compute"] or "float32"
        cfg = self.lora_kwargs(use_dora=VARIANTS[variant])
        torch = self.torch
        torch.manual_seed(1)
        ours = peft_core.get_peft_model(self.load(quant), peft_core.LoraConfig(**cfg))
        theirs = peft.get_peft_model(self.load(quant), peft.LoraConfig(**cfg))
        layer = ours.base_model.model.model.layers[0].self_attn.q_proj
        bnb_cls = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
        wraps_bnb = type(layer).__name__ == "LoraLinear" and layer.view.quantized and isinstance(layer.base_layer, bnb_cls)
        on_device = all(p.device.type == self.device for p in ours.parameters() if p.requires_grad)
        state = peft_core.get_peft_model_state_dict(ours)
        same_keys = sorted(state) == sorted(peft.get_peft_model_state_dict(theirs))
        peft.set_peft_model_state_dict(theirs, state)
        expected = self.logits(ours)
        tol = self.tolerance(compute, expected)
        with ours.disable_adapter():
            effect = self.maxdiff(expected, self.logits(ours))
        d = self.maxdiff(expected, self.logits(theirs))
        self.record(
            quant,
            f"{variant}/outputs",
            wraps_bnb and on_device and same_keys and d <= tol,
            max_abs_diff=d,
            tol=tol,
            adapter_effect=effect,
            logits_max_abs=float(expected.abs().max().item()),
            wraps_bnb_layer=wraps_bnb,
            adapters_on_device=on_device,
            same_state_keys=same_keys,
        )

        ours.save_pretrained(self.workdir / f"{quant}-{variant}-ours")
        theirs.save_pretrained(self.workdir / f"{quant}-{variant}-theirs")
        loaded = peft.PeftModel.from_pretrained(self.load(quant), self.workdir / f"{quant}-{variant}-ours").train()
        d = self.maxdiff(self.logits(loaded), expected)
        self.record(quant, f"{variant}/ckpt_to_peft", d <= tol, max_abs_diff=d, tol=tol)
        del loaded
        ours_loaded = peft_core.PeftModel.from_pretrained(self.load(quant), self.workdir / f"{quant}-{variant}-theirs").train()
        d = self.maxdiff(self.logits(ours_loaded), expected)
        self.record(quant, f"{variant}/ckpt_from_peft", d <= tol, max_abs_diff=d, tol=tol)

        # merge into the quantized layers (re-quantizes), ours next to peft's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            merged = ours.merge_and_unload()
            their_merged = theirs.merge_and_unload()
        still_quantized = isinstance(merged.model.layers[0].self_attn.q_proj, bnb_cls)
        ours_m, theirs_m = self.logits(merged.train()), self.logits(their_merged.train())
        d = self.maxdiff(ours_m, theirs_m)
        err_ours, err_peft = self.maxdiff(ours_m, expected), self.maxdiff(theirs_m, expected)
        rms_ours, rms_peft = self.rms(ours_m, expected), self.rms(theirs_m, expected)
        agree = d <= MERGE_TOL if compute == "float32" else True
        self.record(
            quant,
            f"{variant}/merge_vs_peft",
            still_quantized and agree and rms_ours <= 1.1 * rms_peft + 1e-6,
            max_abs_diff=d,
            tol=MERGE_TOL if compute == "float32" else "n/a (bf16: reported only)",
            rms_ours_vs_unmerged=rms_ours,
            rms_peft_vs_unmerged=rms_peft,
            max_ours_vs_unmerged=err_ours,
            max_peft_vs_unmerged=err_peft,
            still_quantized=still_quantized,
        )
        del merged, their_merged, ours, theirs

        # merge_and_unload(dequantize=True) on the peft_core model loaded from peft's checkpoint
        q_proj = ours_loaded.base_model.model.model.layers[0].self_attn.q_proj
        compute_dtype = q_proj.view.compute_dtype
        reference = None
        if variant == "lora":
            reference = (q_proj.view.get_weight(torch.float32) + q_proj.delta_weight("default").float()).to(compute_dtype)
        adapted = self.logits(ours_loaded)
        # the same adapter, unmerged, over dequantized (dense) copies of the base layers: what the merged
        # model must reproduce. It equals `adapted` where the quantized layer computes x @ dequant(W) (4-bit;
        # 8-bit on the CPU); bnb's CUDA LLM.int8 matmul also rounds the activations to int8, so there the
        # quantized model itself is `quantized_forward_error` away from it
        twin = copy.deepcopy(ours_loaded)
        twin.base_model._dequantize_base_layers()
        adapted_dense = self.logits(twin)
        del twin
        dense = ours_loaded.merge_and_unload(dequantize=True)
        dq = dense.model.layers[0].self_attn.q_proj
        is_dense = type(dq) is torch.nn.Linear and dq.weight.dtype == compute_dtype
        weight_exact = True if reference is None else bool(torch.equal(dq.weight.detach(), reference))
        merged_logits = self.logits(dense)
        d = self.maxdiff(merged_logits, adapted_dense)
        self.record(
            quant,
            f"{variant}/dequantize_merge",
            is_dense and weight_exact and d <= tol,
            max_abs_diff=d,
            tol=tol,
            dense_linear=is_dense,
            weight_bit_exact=weight_exact if reference is not None else "n/a (DoRA)",
            vs_adapted_quantized=self.maxdiff(merged_logits, adapted),
            quantized_forward_error=self.maxdiff(adapted_dense, adapted),
            requantized_merge_error=err_ours,
        )

    def unmerge_check(self, quant: str) -> None:
        import peft_core

        torch = self.torch
        model = peft_core.get_peft_model(self.load(quant), peft_core.LoraConfig(**self.lora_kwargs(init_lora_weights=True)))
        layer = model.base_model.model.model.layers[0].self_attn.q_proj
        before = layer.view.get_weight(torch.float32).clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.merge_adapter()
            model.unmerge_adapter()
        d = self.maxdiff(layer.view.get_weight(torch.float32), before)
        # 8-bit: int8 rounding; bf16: the merge re-quantizes the bf16-dequantized weight, so block scales move
        # by a bf16 rounding and a weight may land one bf16 unit away (at most 2^-7 of the largest weight)
        compute = QUANTS[quant]["compute"] or "float32"
        tol = 2e-2 if quant == "8bit" else (1e-5 if compute == "float32" else 2**-7 * float(before.abs().max().item()))
        self.record(quant, "unmerge_roundtrip", d <= tol, max_abs_diff=d, tol=tol)

    def copy_check(self, quant: str) -> None:
        import peft_core

        model = self.load(quant)
        reference = self.logits(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_core.get_peft_model(copy.deepcopy(model), peft_core.LoraConfig(**self.lora_kwargs())).merge_and_unload()
        d = self.maxdiff(self.logits(model), reference)
        tol = self.tolerance(QUANTS[quant]["compute"] or "float32", reference)
        self.record(quant, "deepcopy_independent", d <= tol, max_abs_diff=d, tol=tol)

    def training_check(self) -> None:
        import peft

        import peft_core

        torch = self.torch
        quant = "4bit-nf4"
        batch = torch.randint(0, 512, (4, 32), generator=torch.Generator().manual_seed(3)).to(self.device)
        curves: dict[str, list[float]] = {}
        init_state: dict[str, Any] | None = None
        for engine, lib in (("peft_core", peft_core), ("peft", peft)):
            torch.manual_seed(0)
            model = self.load(quant)
            norm_before = model.model.norm.weight.dtype
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if engine == "peft_core":
                    model = peft_core.prepare_model_for_kbit_training(model)  # its defaults: reentrant checkpointing
                else:
                    model = peft.prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs={"use_reentrant": True})
            norm_after = model.model.norm.weight.dtype
            config = dict(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
            pmodel = lib.get_peft_model(model, lib.LoraConfig(**config))
            if init_state is None:
                init_state = {k: v.detach().clone() for k, v in peft_core.get_peft_model_state_dict(pmodel).items()}
            else:
                lib.set_peft_model_state_dict(pmodel, init_state)
            pmodel.train()
            frozen = {
                n: p.detach().clone() for n, p in pmodel.named_parameters() if not p.requires_grad and p.dtype.is_floating_point
            }
            opt = torch.optim.AdamW([p for p in pmodel.parameters() if p.requires_grad], lr=5e-3)
            losses = []
            for _ in range(12):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loss = pmodel(input_ids=batch, labels=batch).loss
                loss.backward()
                opt.step()
                opt.zero_grad()
                losses.append(float(loss.item()))
            curves[engine] = losses
            unchanged = all(torch.equal(frozen[n], p.detach()) for n, p in pmodel.named_parameters() if n in frozen)
            self.record(
                quant,
                f"train/{engine}",
                losses[-1] < losses[0] - 0.2 and unchanged and norm_after == torch.float32,
                loss_first=losses[0],
                loss_last=losses[-1],
                frozen_unchanged=unchanged,
                norm_dtype=f"{norm_before} -> {norm_after}".replace("torch.", ""),
                gc_active=bool(getattr(model, "is_gradient_checkpointing", False)),
                losses=[round(x, 5) for x in losses],
            )
            del pmodel, model, opt
        rel = max(abs(a - b) / abs(b) for a, b in zip(curves["peft_core"], curves["peft"]))
        self.record(quant, "train/peft_core_vs_peft", rel < 1e-2, max_rel_loss_diff=rel, tol=1e-2)

    # ------------------------------------------------------------------ driver
    def run(self) -> None:
        self.base = self.build_base()
        for quant in QUANTS:
            for variant in VARIANTS:
                self.guarded(quant, f"{variant}/adapter_checks", lambda q=quant, v=variant: self.adapter_checks(q, v))
            self.guarded(quant, "unmerge_roundtrip", lambda q=quant: self.unmerge_check(q))
            self.guarded(quant, "deepcopy_independent", lambda q=quant: self.copy_check(q))
        self.guarded("4bit-nf4", "train", self.training_check)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file for every check's numbers")
    p.add_argument("--device", default="cuda", help="cuda (the point) or cpu (to try the script)")
    p.add_argument("--engine-src", default=None, help="folder holding the peft_core package (default: this repository)")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.engine_src) if args.engine_src else str(Path(__file__).resolve().parent.parent))
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # "MatMul8bitLt: inputs will be cast ..." per forward
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    t0 = time.perf_counter()

    import bitsandbytes
    import peft
    import torch
    import transformers

    import peft_core

    transformers.utils.logging.disable_progress_bar()
    meta = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bitsandbytes.__version__,
        "peft_core_path": str(Path(peft_core.__file__).parent),
    }
    print(f"meta: {json.dumps(meta)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        checker = Checker(args.device, Path(tmp))
        checker.run()
    failed = [r for r in checker.results if not r["pass"]]
    summary = {"checks": len(checker.results), "failed": len(failed), "wall_s": time.perf_counter() - t0}
    Path(args.out).write_text(json.dumps({"meta": meta, "summary": summary, "results": checker.results}, indent=1))
    print(f"{summary['checks']} checks, {summary['failed']} failed, {summary['wall_s']:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
