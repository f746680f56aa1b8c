"""The model card and loss chart: the facts a reader needs, valid front matter, a real PNG, and identical bytes for the same run."""

from __future__ import annotations

import io

import yaml
from PIL import Image

from worker.publish_card import CHART_FILE, CardFacts, front_matter, loss_chart, model_card

FACTS = CardFacts(repo_id="alice/tiny-lora", run_name="my run", base_model="HuggingFaceTB/SmolLM2-135M",
                  method={"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
                  dataset="demo (built-in)", steps=40, target="adapter", train_losses=[(1, 3.2), (20, 2.1), (40, 1.55)],
                  eval_losses=[(20, 2.4), (40, 1.9)], license="apache-2.0")


def _meta(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_the_adapter_card_names_base_method_settings_dataset_steps_losses_chart_and_both_loaders():
    card = model_card(FACTS)
    meta = _meta(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M" and meta["library_name"] == "peft" and meta["license"] == "apache-2.0"
    assert "peft-studio" in meta["tags"] and "lora" in meta["tags"]
    for fact in ("Method: LORA", "Dataset: demo (built-in)", "Steps: 40", "Final training loss: 1.5500", "Final evaluation loss: 1.9000",
                 '"lora_alpha": 16', '"r": 8', f"]({CHART_FILE})"):
        assert fact in card, fact
    assert 'PeftModel.from_pretrained(base, "alice/tiny-lora")' in card and "from peft import PeftModel" in card
    assert 'peft_core.PeftModel.from_pretrained(base, "alice/tiny-lora")' in card


def test_a_merged_card_loads_with_transformers_and_a_local_base_is_not_claimed_as_a_hub_id():
    merged = CardFacts(**{**FACTS.__dict__, "target": "merged", "base_model": "demo", "eval_losses": [], "license": None})
    card = model_card(merged)
    meta = _meta(card)
    assert "base_model" not in meta and "license" not in meta and meta["library_name"] == "transformers" and "merged" in meta["tags"]
    assert 'AutoModelForCausalLM.from_pretrained("alice/tiny-lora")' in card and "Final evaluation loss: not recorded" in card
    assert front_matter(merged) == meta


def test_the_chart_is_a_png_with_both_curves_and_the_same_bytes_every_time():
    png = loss_chart(FACTS.train_losses, FACTS.eval_losses)
    assert png == loss_chart(FACTS.train_losses, FACTS.eval_losses)
    opened = Image.open(io.BytesIO(png))
    assert opened.format == "PNG" and opened.size == (640, 360)
    image = opened.convert("RGB")
    colours = {c for _, c in image.getcolors(maxcolors=100_000)}
    assert (0x1F, 0x77, 0xB4) in colours and (0xFF, 0x7F, 0x0E) in colours  # training and evaluation lines are drawn


def test_a_run_without_losses_still_gets_a_chart_saying_so():
    image = Image.open(io.BytesIO(loss_chart([], [])))
    assert image.format == "PNG"
    colours = {c for _, c in image.convert("RGB").getcolors(maxcolors=100_000)}
    assert (0x1F, 0x77, 0xB4) not in colours


def test_a_combined_adapters_card_names_its_sources_and_claims_no_training():
    combination = {"sources": [{"run_id": 3, "name": "short answers", "weight": 0.7, "adapter": "/srv/studio/jobs/3/train/adapter"},
                               {"run_id": 4, "name": "long answers", "weight": 0.3, "adapter": "/srv/studio/jobs/4/train/adapter"}],
                   "combination_type": "ties", "density": 0.5, "majority_sign_method": "total", "svd_rank": None, "seed": 0}
    combined = CardFacts(**{**FACTS.__dict__, "run_name": "blend", "steps": 0, "train_losses": [], "eval_losses": [], "combination": combination})
    card = model_card(combined)
    assert _meta(card)["library_name"] == "peft"
    for fact in ("combining fine-tuned adapters", "- Combination: `ties` (", '"density": 0.5', '"majority_sign_method": "total"',
                 '0.7 × run #3 "short answers"', '0.3 × run #4 "long answers"', 'peft_core.PeftModel.from_pretrained(base, "alice/tiny-lora")'):
        assert fact in card, fact
    for absent in ("## Training", "Steps:", "loss", CHART_FILE, "/srv/studio"):
        assert absent not in card, absent
