"""The run page's and Runs list's HTML for a combination (sources, knobs, no loss sparkline or Clone) and the padding tile."""

from __future__ import annotations

from datetime import datetime, timezone

from app.services.runs import RunSummary
from app.ui import run_detail, runs

COMBINE_CONFIG = {
    "kind": "combine", "name": "support + billing", "base_model": "demo", "task_type": "CAUSAL_LM", "method": {"peft_type": "LORA"},
    "combine": {"sources": [{"run_id": 3, "name": "support <v2>", "weight": 0.7, "adapter": "/x"}, {"run_id": 5, "name": "billing", "weight": 0.5, "adapter": "/y"}],
                "combination_type": "svd", "density": None, "majority_sign_method": "total", "svd_rank": 3, "seed": 0},
}


def _summary(**kw) -> RunSummary:
    base = dict(id=9, name="run", status="succeeded", message="", error_hint=None, base_model="demo", method="LORA",
                created_at=datetime.now(timezone.utc), started_at=None, finished_at=None, progress_step=0, progress_total=None,
                attempt=1, max_attempts=1, cancel_requested=False, last_loss=1.5, loss_trace=[2.0, 1.5])
    return RunSummary(**{**base, **kw})


def test_the_combined_from_table_links_each_source_with_its_weight_and_the_knobs_the_type_uses():
    html = run_detail.combined_html(COMBINE_CONFIG)
    assert '<a href="run?run=3" style="color:#4f46e5">#3</a>' in html and '<a href="run?run=5" style="color:#4f46e5">#5</a>' in html
    assert "support &lt;v2&gt;" in html and "<td>0.7</td>" in html and "<td>0.5</td>" in html
    assert "svd" in html and "rank of the result" in html and "density" not in html and "sign election" not in html
    ties = run_detail.combined_html({**COMBINE_CONFIG, "combine": {**COMBINE_CONFIG["combine"], "combination_type": "ties", "density": 0.4,
                                                                   "svd_rank": None}})
    assert "density" in ties and "0.4" in ties and "sign election" in ties and "rank of the result" not in ties
    config = run_detail.config_html(COMBINE_CONFIG)
    assert "Combination" in config and "Training" not in config and "dataset" not in config
    assert "svd_rank" in config and "density" not in config, "only the knobs its type uses"


def test_the_padding_tile_shows_the_last_rows_share_with_its_help():
    rows = [{"step": 1, "loss": 2.0, "eval_loss": None, "lr": 1e-3, "tokens_per_s": 900.0, "padding_share": 0.4},
            {"step": 2, "loss": 1.8, "eval_loss": None, "lr": 1e-3, "tokens_per_s": 950.0, "padding_share": 0.134}]
    html = run_detail.tiles_html(_summary(), rows)
    assert ">13%</div><div class=\"ps-tile-label\">Padding</div>" in html and "training.packing lowers it</div>" in html
    assert html.count('class="ps-tile ') == 5 and html.endswith("</div></div></div>")
    assert run_detail.padding_text(None) == "—" and run_detail.padding_text(0.002) == "<1%" and run_detail.padding_text(0.0) == "0%"


def test_the_runs_list_shows_a_combinations_kind_instead_of_a_loss_sparkline_and_clones_it_on_the_combine_page():
    combo = runs._row(_summary(id=7, kind="combine", last_loss=None, loss_trace=[]))
    trained = runs._row(_summary(id=8))
    assert "Combination" in combo and "ps-loss" not in combo and "new?clone=7" not in combo and "combine?clone=7" in combo
    progress = combo.split('class="ps-col-progress"')[1].split("</td>")[0]
    assert "demo · LORA combination" in combo and "Succeeded" in progress, "its status, not a count of steps it never had"
    assert "ps-loss" in trained and "new?clone=8" in trained and "Combination" not in trained and "combine?clone" not in trained
