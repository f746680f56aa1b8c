"""IA3, LoHa, LoKr, OFT, BOFT and LN tuning on a bitsandbytes 4-bit (and, for IA3 and LoHa, 8-bit) tiny
Llama on CPU, through the same layer classes as on nn.Linear. Where peft runs the method on quantized
layers (IA3, OFT, BOFT, LN tuning) it is the oracle directly; peft's LoHa/LoKr fail on 4-bit layers, so
for them the oracle is peft on the dequantized weights (the function the quantized layer computes).
Comparisons run in train mode: see tests/peft_core/test_quantized.py.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

import peft_core  # noqa: E402
from peft_core.base_layers import view_for  # noqa: E402
from peft_core.training import is_quantized_model  # noqa: E402
from peft_core.tuners.boft import BOFTConfig  # noqa: E402
from peft_core.tuners.ia3 import IA3Config  # noqa: E402
from peft_core.tuners.ln_tuning import LNTuningConfig  # noqa: E402
from peft_core.tuners.loha import LoHaConfig  # noqa: E402
from peft_core.tuners.lokr import LoKrConfig  # noqa: E402
from peft_core.tuners.oft import OFTConfig  # noqa: E402
from tests.peft_core import models  # noqa: E402
from tests.peft_core.oracle import oracle_config, peft  # noqa: E402
from tests.peft_core.test_quantized import load_quantized, logits  # noqa: E402
from tests.peft_core.tuners.contract import randomize_adapter  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """test_quantized.py's tiny Llama (hidden 64, what bnb's CPU 4-bit kernel needs), saved once here."""
    path = tmp_path_factory.mktemp("tiny-llama")
    models.tiny_llama(hidden_size=64, intermediate_size=128).save_pretrained(path)
    return path

IA3 = IA3Config(task_type="CAUSAL_LM", init_ia3_weights=False)
LOHA = LoHaConfig(task_type="CAUSAL_LM", target_modules="all-linear", r=4, init_weights=False)
# (id, config, quantization, where peft is the oracle: on the quantized model itself or on its dequantized weights)
CASES = [
    ("ia3", IA3, "4bit-nf4", "quantized"),
    ("ia3-8bit", IA3, "8bit", "quantized"),
    ("ia3-all-linear", IA3Config(task_type="CAUSAL_LM", target_modules="all-linear", feedforward_modules=["down_proj"], init_ia3_weights=False), "4bit-nf4", "quantized"),
    ("loha", LOHA, "4bit-nf4", "dequantized"),
    ("loha-8bit", LOHA, "8bit", "dequantized"),
    ("lokr", LoKrConfig(task_type="CAUSAL_LM", target_modules="all-linear", r=2, init_weights=False), "4bit-nf4", "dequantized"),
    ("oft", OFTConfig(task_type="CAUSAL_LM", target_modules="all-linear", oft_block_size=8, init_weights=False), "4bit-nf4", "quantized"),
    ("boft", BOFTConfig(task_type="CAUSAL_LM", target_modules="all-linear", boft_block_size=8, init_weights=False), "4bit-nf4", "quantized"),
    ("ln-tuning", LNTuningConfig(task_type="CAUSAL_LM"), "4bit-nf4", "quantized"),
]
IDS = [c[0] for c in CASES]


def dequantized(model):
    """The same model with every quantized linear replaced by a float32 nn.Linear of its dequantized weight."""
    for name, module in list(model.named_modules()):
        view = view_for(module)
        if view is not None and view.quantized:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, view.dense_module(torch.float32))
    return model


def ours_model(base_dir, config, quantization: str):
    model = peft_core.get_peft_model(load_quantized(base_dir, quantization), copy.deepcopy(config)).train()
    randomize_adapter(model)  # LN tuning's copies start equal to the originals
    return model


def oracle_base(base_dir, quantization: str, where: str):
    model = load_quantized(base_dir, quantization)
    return dequantized(model) if where == "dequantized" else model


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_outputs_and_checkpoints_match_peft(base_dir, case, tmp_path):
    _, config, quantization, where = case
    ours = ours_model(base_dir, config, quantization)
    assert is_quantized_model(ours)
    expected = logits(ours)

    theirs = peft.get_peft_model(oracle_base(base_dir, quantization, where), oracle_config(config)).train()
    state = peft_core.get_peft_model_state_dict(ours)
    assert sorted(state) == sorted(peft.get_peft_model_state_dict(theirs))
    assert not peft.set_peft_model_state_dict(theirs, state).unexpected_keys
    torch.testing.assert_close(logits(theirs), expected, **TOL)

    ours.save_pretrained(tmp_path / "ours")
    their_loaded = peft.PeftModel.from_pretrained(oracle_base(base_dir, quantization, where), tmp_path / "ours").train()
    torch.testing.assert_close(logits(their_loaded), expected, **TOL)
    theirs.save_pretrained(tmp_path / "theirs")
    ours_loaded = peft_core.PeftModel.from_pretrained(load_quantized(base_dir, quantization), tmp_path / "theirs").train()
    torch.testing.assert_close(logits(ours_loaded), expected, **TOL)


WEIGHT_CASES = [c for c in CASES if c[0] != "ln-tuning"]  # LN tuning merges by swapping modules, no weight algebra


@pytest.mark.parametrize("case", WEIGHT_CASES, ids=[c[0] for c in WEIGHT_CASES])
def test_dequantized_merge_is_exact(base_dir, case):
    _, config, quantization, _ = case
    model = ours_model(base_dir, config, quantization)
    expected = logits(model)
    merged = model.merge_and_unload(dequantize=True)
    assert type(merged.model.layers[0].self_attn.v_proj) is torch.nn.Linear
    torch.testing.assert_close(logits(merged), expected, **TOL)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("ia3", "loha")], ids=["ia3", "loha"])
def test_merge_requantizes_with_a_warning(base_dir, case):
    """peft refuses to merge IA3 into 4-bit layers and cannot run LoHa on them; ours merges and re-quantizes."""
    _, config, quantization, _ = case
    model = ours_model(base_dir, config, quantization)
    expected = logits(model)
    with pytest.warns(UserWarning, match="re-quantizes"):
        merged = model.merge_and_unload()
    assert isinstance(merged.model.layers[0].self_attn.v_proj, bnb.nn.Linear4bit)
    error = (logits(merged) - expected).abs().max()
    effect = (logits(load_quantized(base_dir, quantization)) - expected).abs().max()  # what the adapter changes
    assert error < 0.5 * effect  # re-quantizing rounds the merged weights but keeps most of the adapter's effect


@pytest.mark.parametrize("config", [IA3Config(task_type="CAUSAL_LM"), LoHaConfig(task_type="CAUSAL_LM", target_modules="all-linear")], ids=["ia3", "loha"])
def test_qlora_style_training_lowers_loss(base_dir, config):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft_core.prepare_model_for_kbit_training(load_quantized(base_dir, "4bit-nf4"), use_gradient_checkpointing=False)
    model = peft_core.get_peft_model(model, copy.deepcopy(config)).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-1)
    batch = torch.randint(0, 64, (4, 12), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(10):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
