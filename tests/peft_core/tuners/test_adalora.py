"""AdaLoRA against the peft oracle (tests/peft_core/tuners/contract.py): SVD-form outputs, checkpoints both
ways (also after budget allocation, with a rank_pattern and sliced tensors), merge, config JSON, the
orthogonal regulariser, and update_and_allocate giving peft's masks from the same gradients."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import peft_core
from peft_core.tuners.adalora import AdaLoraConfig
from tests.peft_core import models
from tests.peft_core.oracle import oracle_config, outputs, peft
from tests.peft_core.tuners import contract
from tests.peft_core.tuners.contract import IDS, IMAGES, SEQ2SEQ, TOKENS, Case


def ada(**kw) -> AdaLoraConfig:
    return AdaLoraConfig(**{"init_lora_weights": False, "total_step": 20, "init_r": 6, "target_r": 2, **kw})


CASES = [
    Case("mlp-linear", models.MLP, IDS, ada(target_modules=["lin0", "head"], lora_alpha=4)),
    Case("convnet-conv2d", models.ConvNet, IMAGES, ada(target_modules=["conv2d", "lin"])),
    Case("llama-default-targets", models.tiny_llama, TOKENS, ada(task_type="CAUSAL_LM")),
    Case("gpt2-conv1d", models.tiny_gpt2, TOKENS, ada(task_type="CAUSAL_LM", target_modules=["c_attn", "c_fc"], lora_alpha=0)),
    Case("t5-default-targets", models.tiny_t5, SEQ2SEQ, ada(task_type="SEQ_2_SEQ_LM")),
    Case("bert-seq-cls", models.tiny_bert, TOKENS, ada(task_type="SEQ_CLS", target_modules=["query", "value"])),
]

test_outputs_match_peft, test_checkpoints_load_both_ways, test_merge_keeps_outputs, test_config_json_round_trips = (
    contract.standard_tests(CASES, round_trip=[CASES[0], CASES[2]])
)


def _train_step(model, seed: int) -> None:
    """One backward pass on a fixed batch (the same in ours and peft's)."""
    torch.manual_seed(seed)
    ids = torch.randint(0, 64, (2, 6))
    model(input_ids=ids).logits.float().pow(2).mean().backward()


def _peft_pattern(theirs) -> dict[str, list[bool]]:
    pattern = theirs.peft_config["default"].rank_pattern or {}
    return {k.replace(".default", ""): list(v) for k, v in pattern.items()}


@pytest.mark.oracle
def test_update_and_allocate_gives_peft_masks():
    """Same weights, same gradients, every step of the schedule (warm-up, shrinking, final): same Λ, same rank_pattern."""
    config = ada(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj", "down_proj"], tinit=2, tfinal=3, total_step=10, deltaT=2)
    ours, theirs = contract.twins(Case("llama", models.tiny_llama, TOKENS, config))
    ours.train()
    theirs.train()
    ours_opt = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=0.05)
    their_opt = torch.optim.SGD([p for p in theirs.parameters() if p.requires_grad], lr=0.05)
    masked_steps = []
    for step in range(1, 13):
        for model, opt in ((ours, ours_opt), (theirs, their_opt)):
            _train_step(model, step)
            opt.step()
            model.base_model.update_and_allocate(step)
            opt.zero_grad()
        mine, their_state = peft_core.get_peft_model_state_dict(ours), peft.get_peft_model_state_dict(theirs)
        pattern = ours.peft_config["default"].rank_pattern
        assert (pattern or {}) == _peft_pattern(theirs), step
        if pattern:
            masked_steps.append(step)
            assert sorted(mine) == sorted(their_state)
            for key, value in mine.items():
                torch.testing.assert_close(value, their_state[key], rtol=1e-4, atol=1e-6, msg=f"{key} at step {step}")
    kept = sum(sum(v) for v in ours.peft_config["default"].rank_pattern.values())
    assert kept == 2 * 6  # target_r × layers (2 layers × 3 modules) at the end of the schedule
    assert masked_steps[0] == 4  # first allocation: after tinit, on a deltaT step


def _allocated(config: AdaLoraConfig):
    model = peft_core.get_peft_model(models.tiny_llama(), copy.deepcopy(config))
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for step in range(1, config.total_step + 1):
        _train_step(model, step)
        opt.step()
        opt.zero_grad(set_to_none=True)  # the studio's order: gradients cleared before the per-step hook
        model.base_model.update_and_allocate(step)
    return model.eval()


@pytest.mark.oracle
def test_checkpoint_after_allocation_loads_both_ways(tmp_path):
    config = ada(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"], total_step=6, tfinal=1)
    ours = _allocated(config)
    pattern = ours.peft_config["default"].rank_pattern
    assert pattern and any(not all(v) for v in pattern.values())
    expected = outputs(ours, TOKENS)

    ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert saved["rank_pattern"] == pattern and all(".default" not in k for k in pattern)
    shapes = {k: tuple(v.shape) for k, v in peft_core.load_peft_weights(tmp_path / "ours").items()}
    for key, kept in pattern.items():
        assert shapes[f"base_model.model.{key}"] == (sum(kept), 1)

    theirs = peft.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "ours").eval()
    torch.testing.assert_close(outputs(theirs, TOKENS), expected, **contract.TOL)
    theirs.save_pretrained(tmp_path / "theirs")
    back = peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "theirs")
    torch.testing.assert_close(outputs(back, TOKENS), expected, **contract.TOL)
    assert {k: tuple(v.shape) for k, v in peft_core.get_peft_model_state_dict(back).items()} == shapes


@pytest.mark.oracle
def test_regulariser_equals_peft_loss_term():
    case = CASES[2]
    ours, theirs = contract.twins(case)
    ours.train()
    theirs.train()
    labels = TOKENS["input_ids"]
    ours_loss = ours(**TOKENS, labels=labels).loss
    their_loss = theirs(**TOKENS, labels=labels).loss
    torch.testing.assert_close(ours_loss, their_loss, rtol=1e-5, atol=1e-6)
    extra = peft_core.tuners.adalora.layer.extra_loss(ours.base_model)
    assert extra.item() > 0.1  # random P, Q are far from orthogonal: the term is really there
    ours.eval()
    torch.testing.assert_close(ours(**TOKENS, labels=labels).loss + extra.detach(), ours_loss.detach(), rtol=1e-5, atol=1e-6)


def test_training_lowers_loss_with_schedule():
    model = peft_core.get_peft_model(models.tiny_llama(), ada(task_type="CAUSAL_LM", target_modules="all-linear", total_step=12))
    step = {"n": 0}

    def step_loss(m):
        step["n"] += 1
        if step["n"] > 1:
            m.base_model.update_and_allocate(step["n"] - 1)
        return contract.lm_loss(m)

    contract.check_training(model, step_loss, lr=2e-2)


@pytest.mark.oracle
def test_two_adapters_second_for_inference():
    case = CASES[2]
    contract.check_two_adapters(case, ada(task_type="CAUSAL_LM", target_modules=["q_proj"], inference_mode=True))


def test_second_trainable_adapter_refused_and_model_unchanged():
    model = peft_core.get_peft_model(models.MLP(), ada(target_modules=["lin0"]))
    before = sorted(n for n, _ in model.named_parameters())
    with pytest.raises(peft_core.ConfigError, match="inference_mode: adapter 'default' is already being trained"):
        model.add_adapter("other", ada(target_modules=["lin0"]))
    assert sorted(n for n, _ in model.named_parameters()) == before
    assert list(model.peft_config) == ["default"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(tinit=15, tfinal=5, total_step=20), "tinit: with total_step=20, tinit=15 and tfinal=5 there is no step left"),
        (dict(target_r=8, init_r=4), "target_r: 8 is above init_r=4"),
        (dict(beta1=1.0), "beta1: must be strictly between 0 and 1"),
        (dict(use_dora=True), "use_dora: AdaLoRA does not support DoRA"),
        (dict(init_lora_weights="pissa"), "init_lora_weights: AdaLoRA initialises with true"),
        (dict(lora_bias=True), "lora_bias: AdaLoRA has no bias on its update"),
    ],
)
def test_bad_settings_name_the_field(kw, message):
    with pytest.raises(peft_core.ConfigError, match=message):
        ada(target_modules=["lin0"], **kw)


def test_total_step_missing_is_refused_when_the_schedule_runs():
    model = peft_core.get_peft_model(models.MLP(), AdaLoraConfig(target_modules=["lin0"]))
    with pytest.raises(peft_core.ConfigError, match="total_step: not set"):
        model.base_model.update_and_allocate(1)


def test_embedding_is_refused_with_the_supported_kinds():
    with pytest.raises(peft_core.UnsupportedLayerError, match="ADALORA cannot adapt 'emb'.*kind: conv, linear"):
        peft_core.get_peft_model(models.MLP(), ada(target_modules=["emb"]))


@pytest.mark.oracle
def test_peft_refuses_what_we_refuse_for_embedding():
    with pytest.raises(ValueError):
        peft.get_peft_model(models.MLP(), oracle_config(ada(target_modules=["emb"])))


@pytest.mark.parametrize(
    ("factory", "kw"),
    [
        (models.MLP, dict(target_modules=["lin0", "head"])),
        (models.ConvNet, dict(target_modules=["conv2d", "lin"], init_r=3)),
        (models.tiny_llama, dict(task_type="CAUSAL_LM", target_modules="all-linear", bias="all")),
        (models.tiny_gpt2, dict(task_type="CAUSAL_LM", target_modules=["c_attn", "c_fc"])),
        (models.tiny_llama, dict(task_type="CAUSAL_LM", rank_pattern={"model.layers.0.self_attn.q_proj.lora_E": [True, False, True, False, False, False]})),
    ],
    ids=["mlp", "convnet", "llama-all-linear-bias", "gpt2-conv1d", "llama-rank-pattern"],
)
def test_parameter_count_from_the_shape_equals_the_real_adapter(factory, kw):
    from peft_core.describe import describe_model

    counted = ada(**kw).trainable_parameter_count(describe_model(factory()))
    model = peft_core.get_peft_model(factory(), ada(**kw))
    assert counted == sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


BEYOND_PEFT = [
    Case("mlp-conv1d", models.MLP, IDS, ada(target_modules=["conv", "lin0"])),
    Case("convnet-conv3d", models.ConvNet, IMAGES, ada(target_modules=["conv3d"])),
]


@pytest.mark.parametrize("case", BEYOND_PEFT, ids=str)
def test_layers_beyond_peft(case, tmp_path):
    """peft's AdaLoRA adapts Conv2d only; Conv1d and Conv3d go through the same flattened-kernel path."""
    contract.check_beyond_peft(case, tmp_path)


def test_an_allocated_checkpoint_loads_into_a_full_rank_model_for_resuming(tmp_path):
    """Resuming a run: the saved kept ranks go into the live full-rank layers with equal outputs, and the
    model saves the same adapter again (same rank_pattern counts, same outputs)."""
    config = ada(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"], total_step=6, tfinal=1)
    trained = _allocated(config)
    expected = outputs(trained, TOKENS)
    trained.save_pretrained(tmp_path / "saved")

    fresh = peft_core.get_peft_model(models.tiny_llama(), copy.deepcopy(config)).eval()
    missing, unexpected = peft_core.set_peft_model_state_dict(fresh, peft_core.load_peft_weights(tmp_path / "saved"))
    assert not missing and not unexpected
    torch.testing.assert_close(outputs(fresh, TOKENS), expected, **contract.TOL)
    saved_pattern = trained.peft_config["default"].rank_pattern
    assert {k: sum(v) for k, v in fresh.peft_config["default"].rank_pattern.items()} == {k: sum(v) for k, v in saved_pattern.items()}
    fresh.save_pretrained(tmp_path / "again")
    back = peft.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "again").eval()
    torch.testing.assert_close(outputs(back, TOKENS), expected, **contract.TOL)
