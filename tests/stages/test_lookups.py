"""What the Snakemake input functions ask the package: folds, files, batches, job resources."""

from __future__ import annotations

from types import SimpleNamespace

from medcnn.stages.layout import fold_bundle_files, n_folds, task_index_file, task_split_files
from medcnn.stages.resources import largest_voxels, stage_resources, training_voxels
from medcnn.stages.subjects import batch_manifests, batch_names


def _config(tmp_path, kind="classification", dims=2):
    task = {"kind": kind, "dims": dims, "split": {"folds": 3}, "preprocess": {"size": 64}}
    return {
        "results": str(tmp_path / "results"),
        "tasks": {"t": task},
        "resources": {
            "train": {"mem_mb": 1000, "runtime": 60, "gpu": 2},
            "report": {"mem_mb": 500, "runtime": 10},
        },
    }


def _manifest(tmp_path, shapes):
    path = tmp_path / "results" / "ingest" / "manifest.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("subject\tshape\n" + "".join(f"sub-{i}\t{s}\n" for i, s in enumerate(shapes)))
    return path


def test_trained_task_files(tmp_path):
    config = _config(tmp_path)
    results = config["results"]
    assert n_folds(config, "t") == 3
    assert fold_bundle_files(config, "t") == [
        f"{results}/models/t/fold{k}/bundle.json" for k in range(3)
    ]
    assert task_index_file(config, "t", "b0001") == f"{results}/preprocess/t/index.tsv"
    assert task_split_files(config, "t") == [f"{results}/splits/t.json"]


def test_bundle_task_files(tmp_path):
    config = _config(tmp_path)
    for k in (0, 1):
        (tmp_path / "bundle" / f"fold{k}").mkdir(parents=True)
        (tmp_path / "bundle" / f"fold{k}" / "bundle.json").write_text("{}")
    config["tasks"]["t"]["bundle"] = str(tmp_path / "bundle")
    assert n_folds(config, "t") == 2
    assert fold_bundle_files(config, "t") == [
        f"{tmp_path / 'bundle' / f'fold{k}'}/bundle.json" for k in (0, 1)
    ]
    index = task_index_file(config, "t", "b0001")
    assert index == f"{config['results']}/preprocess/t/batches/b0001.tsv"
    assert task_split_files(config, "t") == []


def test_memory_grows_with_the_images_and_the_attempt(tmp_path):
    config = _config(tmp_path)
    manifest = tmp_path / "results" / "ingest" / "manifest.tsv"
    assert largest_voxels(manifest) == 0 and training_voxels(manifest, config["tasks"]["t"]) == 0
    _manifest(tmp_path, ["256x256", "512x512x1"])
    assert largest_voxels(manifest) == 512 * 512
    assert training_voxels(manifest, config["tasks"]["t"]) == 2 * 64**2
    assert training_voxels(manifest, {"kind": "segmentation"}) == 256 * 256 + 512 * 512
    train = stage_resources(config, "train")
    wildcards = SimpleNamespace(task="t")
    scaled = 2 * 64**2 * 4 * 8 / 2**20
    assert train["mem_mb"](wildcards, 1) == int(1000 + scaled)
    assert train["mem_mb"](wildcards, 2) == int((1000 + scaled) * 2)
    assert train["runtime"](wildcards, 3) == 180
    assert train["gpu"] == 2 and train["nodes"] == 1
    report = stage_resources(config, "report")
    assert report["mem_mb"](wildcards, 1) == 500  # not scaled to the images
    assert "gpu" not in report and "nodes" not in report


def test_batches_and_their_manifests(tmp_path):
    ingest = tmp_path / "results" / "ingest"
    (ingest / "batches").mkdir(parents=True)
    (ingest / "batches.tsv").write_text(
        "subject\tbatch\nsub-a\tb0002\nsub-b\tb0001\nsub-c\tb0002\n"
    )
    assert batch_names(ingest / "batches.tsv") == ["b0001", "b0002"]
    results = str(tmp_path / "results")
    assert batch_manifests(results, "b0009") == [str(ingest / "batches" / "b0009.tsv")]
    (ingest / "batches" / "b0002.tsv").write_text("subject\nsub-a\nsub-c\n")
    assert batch_manifests(results, "b0002") == [
        str(ingest / "batches" / "b0002.tsv"),
        f"{results}/ingest/sub-a/manifest.tsv",
        f"{results}/ingest/sub-c/manifest.tsv",
    ]
