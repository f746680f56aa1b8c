"""Stored datasets: brought in once by content, listed, previewed in pages, mapped, used by a job, deleted."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.datasets import DatasetError
from app.db.models import Dataset
from app.jobspec import JobSpecError
from app.services import datasets as service
from app.services import jobs


def qa_csv(path, n=45):
    path.write_text("question,answer,source\n" + "".join(f"What is {i} + {i}?,{2 * i},book\n" for i in range(n)))
    return path


def test_a_file_is_stored_once_with_rows_columns_size_and_checksum(tmp_path, session, studio):
    src = tmp_path / "alpaca.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"Say {i}", "input": "", "output": str(i)}) + "\n" for i in range(3)))
    first = service.import_file(session, src, name="alpaca.jsonl", settings=studio)
    again = service.import_file(session, src, name="renamed.jsonl", settings=studio)
    assert again.id == first.id and session.scalar(select(func.count()).select_from(Dataset)) == 1
    assert (first.rows, first.columns, first.format, first.detected) == (3, ["instruction", "input", "output"], "chat", "instruction")
    assert first.size_bytes == src.stat().st_size and len(first.sha256) == 64
    assert first.mapping == {"instruction": "instruction", "input": "input", "output": "output"}
    stored = studio.data_dir / "datasets" / first.sha256[:16] / "alpaca.jsonl"
    assert first.path == str(stored) and stored.read_bytes() == src.read_bytes()


def test_unsure_columns_are_guessed_then_mapped_by_a_person(tmp_path, session, studio):
    record = service.import_file(session, qa_csv(tmp_path / "qa.csv"), name="qa.csv", settings=studio)
    assert (record.detected, record.mapping, record.rows) == ("prompt_completion", {"prompt": "question", "completion": "answer"}, 45)
    odd = tmp_path / "odd.csv"
    odd.write_text("ask,reply\nhello?,hi\n")
    unknown = service.import_file(session, odd, name="odd.csv", settings=studio)
    assert (unknown.detected, unknown.format, unknown.mapping) == (None, "", None)
    with pytest.raises(DatasetError, match="no column 'answer'"):
        service.update_mapping(session, unknown.id, shape="prompt_completion", mapping={"prompt": "ask", "completion": "answer"})
    assert service.get_dataset(session, unknown.id).mapping is None  # nothing saved on failure
    mapped = service.update_mapping(session, unknown.id, shape="prompt_completion", mapping={"prompt": "ask", "completion": "reply"})
    assert (mapped.detected, mapped.format, mapped.mapping) == ("prompt_completion", "prompt_completion", {"prompt": "ask", "completion": "reply"})
    assert service.rows_of(mapped).rows == [{"prompt": "hello?", "completion": "hi"}]


def test_preview_pages_through_the_rows_as_stored(tmp_path, session, studio):
    record = service.import_file(session, qa_csv(tmp_path / "qa.csv"), name="qa.csv", settings=studio)
    page = service.preview(session, record.id, page=3, page_size=20)
    assert (page.columns, page.total, page.pages, page.page) == (["question", "answer", "source"], 45, 3, 3)
    assert page.rows[0] == ["What is 40 + 40?", "80", "book"] and len(page.rows) == 5
    assert service.preview(session, record.id, page=99, page_size=20).page == 3


def test_a_job_on_a_stored_dataset_gets_its_path_and_mapping_and_bad_ones_are_refused(tmp_path, session, studio):
    record = service.import_file(session, qa_csv(tmp_path / "qa.csv"), name="qa.csv", settings=studio)
    job = jobs.create_job(session, spec={"base_model": "demo", "method": {"peft_type": "LORA"},
                                         "dataset": {"source": "stored", "dataset_id": record.id}}, settings=studio)
    assert job.config["dataset"] | {"template": None} == {
        "source": "stored", "dataset_id": record.id, "path": record.path, "format": "prompt_completion",
        "mapping": {"prompt": "question", "completion": "answer"}, "template": None, "system_prompt": None}
    with pytest.raises(JobSpecError, match="There is no dataset 999"):
        jobs.create_job(session, spec={"base_model": "demo", "method": {"peft_type": "LORA"}, "dataset": {"source": "stored", "dataset_id": 999}},
                        settings=studio)
    with pytest.raises(JobSpecError, match="no column 'nope'"):
        jobs.create_job(session, spec={"base_model": "demo", "method": {"peft_type": "LORA"}, "dataset": {
            "source": "stored", "dataset_id": record.id, "format": "prompt_completion", "mapping": {"prompt": "nope"}}}, settings=studio)
    with pytest.raises(service.DatasetInUse, match=f"used by run {job.id}"):
        service.delete_dataset(session, record.id)
    jobs.request_cancel(session, job_id=job.id)  # a queued job ends cancelled at once: the dataset is free again
    service.delete_dataset(session, record.id)
    assert service.list_datasets(session) == []


def test_delete_removes_the_record_and_the_file(tmp_path, session, studio):
    record = service.import_file(session, qa_csv(tmp_path / "qa.csv"), name="qa.csv", settings=studio)
    folder = studio.data_dir / "datasets" / record.sha256[:16]
    service.delete_dataset(session, record.id)
    assert not folder.exists() and service.list_datasets(session) == []
    with pytest.raises(service.DatasetNotFound):
        service.get_dataset(session, record.id)


def test_a_local_path_and_a_hub_dataset_offline(tmp_path, session, studio, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    record = service.import_path(session, str(qa_csv(tmp_path / "qa.csv", n=3)), settings=studio)
    assert (record.source, record.origin, record.rows) == ("path", str(tmp_path / "qa.csv"), 3)
    with pytest.raises(DatasetError, match="'someone/data'.*offline"):
        service.import_hub(session, "someone/data", split="train", settings=studio)
    assert len(service.list_datasets(session)) == 1
    assert not any((studio.data_dir / "tmp").iterdir())


def test_dataset_folders_a_loading_script_is_refused_and_plain_data_files_work(tmp_path, session, studio, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    scripted = tmp_path / "scripted"
    scripted.mkdir()
    (scripted / "scripted.py").write_text("raise SystemExit('never run')\n")
    (scripted / "train.jsonl").write_text('{"text": "hi"}\n')
    with pytest.raises(DatasetError, match="trust_remote_code, which the studio refuses"):
        service.import_path(session, str(scripted), settings=studio)
    assert service.list_datasets(session) == [] and not (studio.data_dir / "datasets").exists()
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.jsonl").write_text('{"instruction": "Say hi.", "output": "hi"}\n{"instruction": "Say bye.", "output": "bye"}\n')
    record = service.import_path(session, str(plain), split="train", settings=studio)
    assert (record.source, record.name, record.rows, record.detected) == ("path", "plain-train.jsonl", 2, "instruction")
    assert service.rows_of(record).rows[1]["messages"] == [{"role": "user", "content": "Say bye."}, {"role": "assistant", "content": "bye"}]
