"""The contract every tuner's case table runs through, with `peft` as the oracle.

A tuner's test module lists `Case`s (a tiny model, its inputs, a config whose adapters are not the
identity), takes the standard parametrized tests from `standard_tests`, and calls the other checks
from its own tests:

- outputs equal peft's with the same adapter weights (ours copied into peft), same checkpoint keys/shapes;
- checkpoints load both ways with equal outputs and the same adapter_config.json field names;
- merging keeps the outputs (merge, unmerge, merge_and_unload);
- the config's JSON round-trips through peft with the same field names and values;
- a short training run lowers the loss and changes only adapter tensors;
- two adapters on one model: add, set, delete, each equal to peft's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn as nn

import peft_core
from peft_core.checkpoint import adapter_tensor_map
from tests.peft_core.oracle import oracle_config, outputs, peft

TOL = dict(rtol=1e-5, atol=1e-5)
MERGE_TOL = dict(rtol=1e-4, atol=1e-4)

TOKENS = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2], [4, 8, 15, 16, 23, 42]])}
SEQ2SEQ = {**TOKENS, "decoder_input_ids": torch.tensor([[0, 3, 5], [0, 7, 9]])}
IDS = torch.tensor([[1, 2, 3, 4, 5]])
IMAGES = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))


@dataclass
class Case:
    id: str
    factory: Callable[[], nn.Module]
    inputs: Any
    config: peft_core.PeftConfig
    # write random values into the adapter tensors (methods whose init flags cannot make them non-trivial)
    randomize: bool = False
    # compare our unmerged outputs with peft's *merged* model, where peft's own forward disagrees with its
    # merge (see docs/tuners.md); checkpoints are still checked against peft's merged outputs
    peft_merged_reference: bool = False
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.id


def randomize_adapter(model: nn.Module, adapter_name: str = "default", seed: int = 0) -> None:
    """Add deterministic noise to every tensor of one adapter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in adapter_tensor_map(model, adapter_name, save_embedding_layers=False).values():
            tensor.add_(torch.randn(tensor.shape, generator=gen).to(tensor) * 0.2)


def ours_model(case: Case, base: nn.Module | None = None) -> nn.Module:
    model = peft_core.get_peft_model(copy.deepcopy(base) if base is not None else case.factory(), copy.deepcopy(case.config))
    if case.randomize:
        randomize_adapter(model)
    return model.eval()


def twins(case: Case) -> tuple[nn.Module, nn.Module]:
    """(ours, peft's) over identical base models, peft's adapter loaded from our state dict."""
    base = case.factory()
    ours = ours_model(case, base)
    theirs = peft.get_peft_model(copy.deepcopy(base), oracle_config(case.config))
    result = peft.set_peft_model_state_dict(theirs, peft_core.get_peft_model_state_dict(ours))
    assert not result.unexpected_keys, result.unexpected_keys
    return ours, theirs.eval()


def reference_outputs(case: Case, theirs: nn.Module) -> torch.Tensor:
    if case.peft_merged_reference:
        return outputs(copy.deepcopy(theirs).merge_and_unload(), case.inputs)
    return outputs(theirs, case.inputs)


def check_outputs_match_peft(case: Case) -> None:
    ours, theirs = twins(case)
    mine, their_state = peft_core.get_peft_model_state_dict(ours), peft.get_peft_model_state_dict(theirs)
    assert {k: tuple(v.shape) for k, v in mine.items()} == {k: tuple(v.shape) for k, v in their_state.items()}
    expected = outputs(ours, case.inputs)
    with ours.disable_adapter():
        base = outputs(ours, case.inputs)
    assert not torch.allclose(expected, base, **TOL), "the case's adapter is the identity: make it non-trivial"
    torch.testing.assert_close(expected, reference_outputs(case, theirs), **TOL)
    with ours.disable_adapter(), theirs.disable_adapter():
        torch.testing.assert_close(outputs(ours, case.inputs), outputs(theirs, case.inputs), **TOL)


def check_checkpoints_both_ways(case: Case, tmp_path) -> None:
    ours, theirs = twins(case)
    expected = outputs(ours, case.inputs)

    ours.save_pretrained(tmp_path / "ours")
    their_loaded = peft.PeftModel.from_pretrained(case.factory(), tmp_path / "ours").eval()
    torch.testing.assert_close(reference_outputs(case, their_loaded), expected, **TOL)

    theirs.save_pretrained(tmp_path / "theirs")
    ours_loaded = peft_core.PeftModel.from_pretrained(case.factory(), tmp_path / "theirs")
    torch.testing.assert_close(outputs(ours_loaded, case.inputs), expected, **TOL)
    assert sorted(peft_core.get_peft_model_state_dict(ours_loaded)) == sorted(peft.get_peft_model_state_dict(their_loaded))

    saved_ours = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    saved_theirs = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert set(saved_ours) - {"peft_version"} == set(saved_theirs) - {"peft_version"}


def check_merge_keeps_outputs(case: Case) -> None:
    model = ours_model(case)
    expected = outputs(model, case.inputs)
    model.merge_adapter()
    torch.testing.assert_close(outputs(model, case.inputs), expected, **MERGE_TOL)
    model.unmerge_adapter()
    torch.testing.assert_close(outputs(model, case.inputs), expected, **MERGE_TOL)
    merged = model.merge_and_unload(safe_merge=True)
    assert not any(isinstance(m, peft_core.layer.AdapterLayer) for m in merged.modules())
    torch.testing.assert_close(outputs(merged, case.inputs), expected, **MERGE_TOL)


def _plain(data: dict) -> dict:
    """adapter_config.json values compared as JSON (sets and lists as sorted lists), peft_version aside."""
    out = {}
    for key, value in data.items():
        if key in ("peft_version", "auto_mapping"):
            continue
        value = json.loads(json.dumps(value, default=sorted))
        out[key] = sorted(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
    return out


def check_config_round_trip(config: peft_core.PeftConfig) -> None:
    """Our JSON builds the same peft config, and peft's JSON builds the same config of ours."""
    their_json = json.loads(json.dumps(oracle_config(config).to_dict(), default=sorted))
    assert _plain(config.to_dict()) == _plain(their_json)
    back = peft_core.PeftConfig.from_dict(their_json)
    assert type(back) is type(config)
    assert _plain(back.to_dict()) == _plain(config.to_dict())


def lm_loss(model: nn.Module) -> torch.Tensor:
    return model(**TOKENS, labels=TOKENS["input_ids"]).loss


def check_training(model: nn.Module, step_loss: Callable[[nn.Module], torch.Tensor] = lm_loss, steps: int = 12, lr: float = 1e-2) -> None:
    """A few AdamW steps lower the loss and change only the active adapter's tensors."""
    torch.manual_seed(0)
    model.train()
    adapter_ids = {id(t) for t in adapter_tensor_map(model, "default", save_embedding_layers=False).values()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and {id(p) for n, p in model.named_parameters() if n in trainable} == adapter_ids
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = step_loss(model)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and changed <= trainable, changed - trainable


def check_two_adapters(case: Case, second: peft_core.PeftConfig) -> None:
    """Add a second adapter, switch between them and delete it, in step with peft."""
    base = case.factory()
    ours = ours_model(case, base)
    ours.add_adapter("other", copy.deepcopy(second))
    randomize_adapter(ours, "other", seed=1)
    theirs = peft.get_peft_model(copy.deepcopy(base), oracle_config(case.config))
    theirs.add_adapter("other", oracle_config(second))
    for name in ("default", "other"):
        peft.set_peft_model_state_dict(theirs, peft_core.get_peft_model_state_dict(ours, adapter_name=name), adapter_name=name)
    ours.eval()
    theirs.eval()
    seen = []
    for name in ("other", "default"):
        ours.set_adapter(name)
        theirs.set_adapter(name)
        seen.append(outputs(ours, case.inputs))
        torch.testing.assert_close(seen[-1], reference_outputs(case, theirs), **TOL)
    assert not torch.allclose(seen[0], seen[1], **TOL)
    ours.delete_adapter("other")
    theirs.delete_adapter("other")
    assert list(ours.peft_config) == ["default"]
    assert not [n for n, _ in ours.named_parameters() if ".other." in n]
    torch.testing.assert_close(outputs(ours, case.inputs), seen[1], **TOL)
    torch.testing.assert_close(outputs(ours, case.inputs), reference_outputs(case, theirs), **TOL)


def check_beyond_peft(case: Case, tmp_path) -> None:
    """For layers peft refuses for this method: the adapter changes the outputs, a save/load round trip in
    peft_core keeps them, and merging keeps them."""
    model = ours_model(case)
    expected = outputs(model, case.inputs)
    with model.disable_adapter():
        assert not torch.allclose(outputs(model, case.inputs), expected, **TOL)
    model.save_pretrained(tmp_path)
    loaded = peft_core.PeftModel.from_pretrained(case.factory(), tmp_path)
    torch.testing.assert_close(outputs(loaded, case.inputs), expected, **TOL)
    check_merge_keeps_outputs(case)


def check_seeded_training_matches_peft(case: Case, seeds: int = 3) -> None:
    """Training-mode forwards from the same seed give peft's outputs: random dropouts are drawn alike."""
    ours, theirs = twins(case)
    ours.train()
    theirs.train()
    for seed in range(seeds):
        torch.manual_seed(seed)
        mine = outputs(ours, case.inputs)
        torch.manual_seed(seed)
        torch.testing.assert_close(mine, outputs(theirs, case.inputs), **TOL)


def standard_tests(cases: list[Case], round_trip: list[Case]) -> tuple[Callable[..., None], ...]:
    """The table-driven tests every tuner module runs; assign them to test_* names in the module."""

    @pytest.mark.oracle
    @pytest.mark.parametrize("case", cases, ids=str)
    def test_outputs_match_peft(case):
        check_outputs_match_peft(case)

    @pytest.mark.oracle
    @pytest.mark.parametrize("case", cases, ids=str)
    def test_checkpoints_load_both_ways(case, tmp_path):
        check_checkpoints_both_ways(case, tmp_path)

    @pytest.mark.parametrize("case", cases, ids=str)
    def test_merge_keeps_outputs(case):
        check_merge_keeps_outputs(case)

    @pytest.mark.oracle
    @pytest.mark.parametrize("case", round_trip, ids=str)
    def test_config_json_round_trips(case):
        check_config_round_trip(case.config)

    return test_outputs_match_peft, test_checkpoints_load_both_ways, test_merge_keeps_outputs, test_config_json_round_trips
