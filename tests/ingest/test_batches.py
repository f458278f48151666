"""Arrival batches: kept across runs, new subjects in new batches, files rewritten on change."""

from __future__ import annotations

from medcnn.ingest.batches import assign_batches, batch_subjects, read_batches, write_batches


def test_new_subjects_are_spread_over_at_least_min_batches():
    subjects = [f"sub-{i:02x}" for i in range(10)]
    batches = assign_batches(subjects, {}, max_subjects=100, min_batches=4)
    sizes = sorted(list(batches.values()).count(b) for b in set(batches.values()))
    assert sizes == [2, 2, 3, 3]
    assert sorted(set(batches.values())) == ["b0001", "b0002", "b0003", "b0004"]
    # contiguous in sorted order: the first subjects share the first batch
    assert batches["sub-00"] == batches["sub-01"] == "b0001"


def test_max_subjects_caps_a_batch_and_few_subjects_give_few_batches():
    many = assign_batches([f"sub-{i:03x}" for i in range(250)], {}, 100, 1)
    assert len(set(many.values())) == 3
    assert max(list(many.values()).count(b) for b in set(many.values())) <= 100
    assert len(set(assign_batches(["sub-a", "sub-b"], {}, 100, 4).values())) == 2


def test_old_subjects_keep_their_batch_and_newcomers_get_new_ones():
    previous = {"sub-a": "b0001", "sub-b": "b0002"}
    batches = assign_batches(["sub-a", "sub-b", "sub-c"], previous, 100, 4)
    assert batches == {"sub-a": "b0001", "sub-b": "b0002", "sub-c": "b0003"}
    # a subject gone from the manifest is dropped
    assert assign_batches(["sub-b"], previous, 100, 4) == {"sub-b": "b0002"}


def test_batch_files_are_only_rewritten_when_they_change(tmp_path):
    write_batches(tmp_path, ["sub-a", "sub-b"], 100, 2)
    first = tmp_path / "batches" / "b0001.tsv"
    stamp = first.stat().st_mtime_ns
    assert batch_subjects(tmp_path, "b0001") == ["sub-a"]
    write_batches(tmp_path, ["sub-a", "sub-b", "sub-c"], 100, 2)
    assert first.stat().st_mtime_ns == stamp
    assert read_batches(tmp_path) == {"sub-a": "b0001", "sub-b": "b0002", "sub-c": "b0003"}
    assert batch_subjects(tmp_path, "b0003") == ["sub-c"]
    # a batch left empty disappears
    write_batches(tmp_path, ["sub-b", "sub-c"], 100, 2)
    assert not first.exists()


def test_assignment_survives_snakemake_deleting_batches_tsv(tmp_path):
    """Snakemake deletes a job's declared outputs (``batches.tsv``) before re-running ingest;
    the subjects must keep their batches all the same, or a newcomer re-runs everyone."""
    write_batches(tmp_path, ["sub-a", "sub-b"], 100, 1)
    assert read_batches(tmp_path) == {"sub-a": "b0001", "sub-b": "b0001"}
    (tmp_path / "batches.tsv").unlink()
    stamp = (tmp_path / "batches" / "b0001.tsv").stat().st_mtime_ns
    write_batches(tmp_path, ["sub-a", "sub-b", "sub-c"], 100, 1)
    assert read_batches(tmp_path) == {"sub-a": "b0001", "sub-b": "b0001", "sub-c": "b0002"}
    assert (tmp_path / "batches" / "b0001.tsv").stat().st_mtime_ns == stamp
    assert (tmp_path / "batches.tsv").read_text().splitlines()[1:] == [
        "sub-a\tb0001",
        "sub-b\tb0001",
        "sub-c\tb0002",
    ]
