"""Packing (training.packing): rows laid end to end never attend to or learn from each other; padding_share is reported."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from app.datasets.tokenization import TokenSettings
from worker.training import TrainingError, data, loop, run_training
from worker.training.data import IGNORE_INDEX, Example
from worker.training.precision import choose_precision

from .conftest import Recorder, demo_spec


def _example(ids: list[int], masked: int = 0) -> Example:
    return Example(ids, [IGNORE_INDEX] * masked + ids[masked:])


def test_pack_lays_rows_end_to_end_without_splitting_them():
    examples = [_example(list(range(10 * k, 10 * k + n))) for k, n in enumerate((5, 3, 6, 2, 4))]
    packs = data.pack(examples, max_len=8, seed=1)
    assert packs == data.pack(examples, max_len=8, seed=1)  # a pure function of the seed: resume packs alike
    assert all(len(p.input_ids) <= 8 and sum(p.segments) == len(p.input_ids) for p in packs)
    rows = []
    for p in packs:  # every row appears whole, once, and its first token carries no label
        start = 0
        for n in p.segments:
            ids, labels = p.input_ids[start : start + n], p.labels[start : start + n]
            rows.append(ids[0] // 10)
            assert ids == list(range(ids[0], ids[0] + n)) and labels == [IGNORE_INDEX, *ids[1:]]
            start += n
    assert sorted(rows) == [0, 1, 2, 3, 4]
    assert [r for r in rows] != [0, 1, 2, 3, 4] or data.pack(examples, 8, seed=2) != packs  # the order is shuffled by the seed


def test_collate_restarts_positions_per_row_and_counts_padding_as_its_own_row():
    packed = Example([1, 2, 3, 4, 5], [IGNORE_INDEX, 2, IGNORE_INDEX, 4, 5], segments=(2, 3))
    batch = data.collate([packed, Example([7, 8], [IGNORE_INDEX, 8], segments=(2,))], pad_id=0)
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 2], [0, 1, 0, 1, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, IGNORE_INDEX, 4, 5], [IGNORE_INDEX, 8, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    assert "position_ids" not in data.collate([Example([1, 2], [1, 2])], pad_id=0)


@pytest.fixture(scope="module")
def demo_model(demo_folder):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(demo_folder, dtype=torch.float32)
    model.eval()
    return model


def _demo_examples(demo_folder, n: int, max_len: int = 512) -> list[Example]:
    from app.datasets import Rows
    from app.datasets.tokenizer_files import load_tokenizer

    rows = [
        {"messages": [{"role": "user", "content": f"Greet person {i}."}, {"role": "assistant", "content": f"Hello, person {i}!" + " Nice day." * i}]}
        for i in range(n)
    ]
    examples, _ = data.tokenize(Rows("test rows", "chat", rows, list(range(1, n + 1))), load_tokenizer(demo_folder), TokenSettings(max_len))
    return examples


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_each_packed_row_gets_the_logits_it_gets_alone(demo_model, demo_folder, attention):
    """The proof that packed rows do not attend across boundaries: logits equal those of the row by itself."""
    demo_model.set_attn_implementation(attention)
    examples = _demo_examples(demo_folder, 4)
    (packed,) = data.pack(examples, max_len=512, seed=0)
    assert len(packed.segments) == 4
    batch = data.collate([packed], pad_id=0)
    with torch.no_grad():
        logits = demo_model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for n in packed.segments:
            ids = packed.input_ids[start : start + n]
            alone = demo_model(input_ids=torch.tensor([ids])).logits[0]
            torch.testing.assert_close(logits[start : start + n], alone, rtol=1e-4, atol=1e-4)
            start += n
        # and the wrong way really differs: with the plain 2D mask the later rows see the earlier ones
        leaky = demo_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0]
    n0 = packed.segments[0]
    assert not torch.allclose(leaky[n0 : n0 + packed.segments[1]], logits[n0 : n0 + packed.segments[1]], atol=1e-3)


def test_packed_loss_equals_the_loss_of_the_rows_alone(demo_model, demo_folder):
    """token_loss over a packed batch sums exactly the per-row losses: no token is predicted from another row."""
    demo_model.set_attn_implementation("sdpa")
    examples = _demo_examples(demo_folder, 5)
    packs = data.pack(examples, max_len=64, seed=3)
    assert len(packs) > 1 and any(len(p.segments) > 1 for p in packs)
    precision = choose_precision("fp32")
    with torch.no_grad():
        packed_sum, packed_n = loop.token_loss(demo_model, data.collate(packs, pad_id=0), precision)
        alone_sum, alone_n = 0.0, 0
        for e in examples:
            logits = demo_model(input_ids=torch.tensor([e.input_ids])).logits[0]
            targets = torch.tensor(e.labels[1:])
            alone_sum += F.cross_entropy(logits[:-1], targets, ignore_index=IGNORE_INDEX, reduction="sum").item()
            alone_n += int((targets != IGNORE_INDEX).sum())
    assert packed_n == alone_n
    assert packed_sum.item() == pytest.approx(alone_sum, rel=1e-4)


def test_a_packed_run_lowers_the_loss_and_reports_less_padding(tmp_path, data_dir):
    runs = {}
    for packing in (False, True):
        rec = Recorder()
        spec = demo_spec(max_steps=12, batch_size=4, max_seq_length=128, learning_rate=1e-2, lr_scheduler="constant", warmup_ratio=0, packing=packing)
        result = run_training(spec, tmp_path / f"p{packing}", rec.hooks())
        runs[packing] = (rec, result)
    rec, result = runs[True]
    losses = [row["loss"] for row in rec.metrics]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    assert any(line.startswith("packing: ") and "(checked: " in line for line in rec.logs)
    packed_share = [row["padding_share"] for row in rec.metrics]
    plain_share = [row["padding_share"] for row in runs[False][0].metrics]
    assert all(0 <= s < 1 for s in packed_share + plain_share)
    mean_packed, mean_plain = sum(packed_share) / len(packed_share), sum(plain_share) / len(plain_share)
    assert mean_packed < 0.2 < mean_plain  # demo rows (20-100 tokens) padded to the batch's longest vs. laid end to end in 128
    assert mean_packed < mean_plain / 2


def test_packing_with_a_prompt_learning_method_is_refused_in_words(tmp_path, data_dir):
    from peft_core.registry import registered_methods

    prompt_methods = [name for name, spec in registered_methods().items() if spec.config_cls.is_prompt_learning]
    assert prompt_methods, "prompt tuning, prefix tuning and p-tuning are registered"
    for name in prompt_methods:
        spec = demo_spec(max_steps=1, packing=True)
        spec["method"] = {"peft_type": name}
        with pytest.raises(TrainingError, match="training.packing: .* prepends virtual tokens to each sequence"):
            run_training(spec, tmp_path / "w", Recorder().hooks())


def test_a_packed_run_resumes_on_the_same_loss_curve(tmp_path, data_dir):
    """Packing is a pure function of the seed, so an interrupted packed run continues exactly."""
    from worker.training import TrainingCancelled

    def spec():
        return demo_spec(max_steps=6, batch_size=2, max_seq_length=96, checkpoint_every=3, learning_rate=3e-3, packing=True)

    straight = Recorder()
    run_training(spec(), tmp_path / "straight", straight.hooks())
    interrupted = Recorder(stop_before=5)
    with pytest.raises(TrainingCancelled):
        run_training(spec(), tmp_path / "resumed", interrupted.hooks())
    resumed = Recorder()
    run_training(spec(), tmp_path / "resumed", resumed.hooks(), resume_from=tmp_path / "resumed" / "checkpoints" / "step-3")
    assert sorted(resumed.losses()) == [4, 5, 6]
    expected = straight.losses()
    for step, loss in {**interrupted.losses(), **resumed.losses()}.items():
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-7), f"step {step}"
    with pytest.raises(TrainingError, match=r"different settings \(training.packing\)"):
        unpacked = {**spec(), "training": {**spec()["training"], "packing": False}}
        run_training(unpacked, tmp_path / "resumed", Recorder().hooks(), resume_from=tmp_path / "resumed" / "checkpoints" / "step-3")


@pytest.mark.parametrize(
    ("fmt", "rows"),
    [
        ("chat", [{"messages": [{"role": "user", "content": f"Greet {n}."}, {"role": "assistant", "content": f"Hello, {n}!"}]} for n in "ABCD"]),
        ("prompt_completion", [{"prompt": f"{i} + 1 =", "completion": f" {i + 1}"} for i in range(4)]),
        ("text", [{"text": f"The number after {i} is {i + 1}."} for i in range(4)]),
    ],
)
def test_each_format_packs_into_batches_with_every_row_ending_in_a_trained_eos(fmt, rows, demo_folder, demo_tokenizer):
    from app.datasets import Rows
    from app.datasets.tokenizer_files import load_tokenizer

    examples, _ = data.tokenize(Rows("r", fmt, rows, [1, 2, 3, 4]), load_tokenizer(demo_folder), TokenSettings(64))
    packs = data.pack(examples, max_len=64, seed=0)
    batch = data.collate(packs, pad_id=demo_tokenizer.pad_token_id)
    eos = demo_tokenizer.eos_token_id
    for p, pack in enumerate(packs):
        ids, labels, positions = batch["input_ids"][p].tolist(), batch["labels"][p].tolist(), batch["position_ids"][p].tolist()
        start = 0
        for n in pack.segments:
            assert positions[start : start + n] == list(range(n))  # positions restart: a new row
            assert labels[start] == IGNORE_INDEX  # its first token is not predicted from the row before
            assert ids[start + n - 1] == eos and labels[start + n - 1] == eos  # each row ends with a trained EOS
            trained = demo_tokenizer.decode([t for t, label in zip(ids[start : start + n], labels[start : start + n]) if label != IGNORE_INDEX])
            if fmt == "chat":
                assert trained.startswith("Hello, ") and trained.endswith("!<|im_end|>")
            elif fmt == "prompt_completion":
                assert trained.strip().removesuffix("<|im_end|>").isdigit()
            start += n
        assert all(label == IGNORE_INDEX for label in labels[start:])  # padding


class IgnoresPositions(torch.nn.Module):
    """A causal LM whose attention knows nothing of packed rows (it drops position_ids): rows would see each other."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, position_ids=None, use_cache=None, attention_mask=None):
        return self.inner(input_ids=input_ids)


def test_packing_is_refused_for_a_model_whose_attention_leaks_across_rows(demo_model, demo_folder):
    demo_model.set_attn_implementation("sdpa")
    packs = data.pack(_demo_examples(demo_folder, 4), max_len=512, seed=0)
    precision = choose_precision("fp32")
    assert loop.check_packed_attention(demo_model, packs, precision) < 1e-4  # the real one keeps rows apart
    with pytest.raises(TrainingError, match="cannot be used with the leaky model: its attention does not keep packed rows apart") as info:
        loop.check_packed_attention(IgnoresPositions(demo_model), packs, precision, "the leaky model")
    assert "packing off" in info.value.hint
    assert loop.check_packed_attention(demo_model, data.pack(_demo_examples(demo_folder, 1), 512, 0), precision) == 0.0  # nothing packed
