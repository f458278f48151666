"""pydicom's codec libraries deferred by ``medcnn ingest`` (:mod:`medcnn.io.codecs`).

Each check runs in a fresh interpreter, where the import order is the command's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from tests.ingest.hostile_corpus import _compressed
from tests.io.synthetic import base_dataset

REPO = Path(__file__).resolve().parents[2]
CODEC_MODULES = ("gdcm", "jpeg_ls", "pylibjpeg", "openjpeg")
#: The pixels of every file here (those `hostile_corpus._compressed` writes).
PIXELS = np.random.default_rng(7).integers(0, 4000, (64, 64)).astype(np.uint16)

#: pydicom's registry of pixel-data plugins, in the order it tries them, and the deprecated
#: handlers' answers: what a plain ``import pydicom`` makes.
STATE = """
import json
from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS
from pydicom.pixels.encoders.base import _PIXEL_DATA_ENCODERS
from pydicom.pixel_data_handlers import gdcm_handler, jpeg_ls_handler, pylibjpeg_handler
state = {}
for kind, registry in (("decoder", _PIXEL_DATA_DECODERS), ("encoder", _PIXEL_DATA_ENCODERS)):
    for uid, (coder, *_) in registry.items():
        state[kind + " " + uid] = [
            [[k, f.__module__, f.__name__] for k, f in coder._available.items()],
            list(coder._unavailable),
        ]
state["legacy"] = [h.is_available() for h in (gdcm_handler, jpeg_ls_handler, pylibjpeg_handler)]
print(json.dumps(state))
"""


def _python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n{code}"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_loaded_codecs_are_those_of_a_plain_import():
    plain = json.loads(_python("import pydicom\n" + STATE))
    lean = (
        "from medcnn.io import codecs\n"
        "codecs.import_pydicom(defer_codecs=True)\n"
        f"kept_out = [m for m in {CODEC_MODULES!r} if m in sys.modules] == []\n"
        "assert kept_out and codecs.deferred(), 'the codec libraries were imported'\n"
        "codecs.load_codecs()\n"
        "assert not codecs.deferred()\n"
        "codecs.load_codecs()  # again: nothing more\n"
    )
    restored = json.loads(_python(lean + STATE))
    assert restored == plain
    # The registry is worth comparing: this machine has the codecs that pyproject declares.
    assert any(plugins for plugins, _ in plain.values() if isinstance(plugins, list))
    assert ["pylibjpeg", "pydicom.pixels.decoders.pylibjpeg", "_decode_frame"] in plain[
        f"decoder {JPEG2000Lossless}"
    ][0]


def test_a_library_import_defers_nothing():
    """``import medcnn.ingest`` (a library user's) keeps the codecs pydicom imports."""
    code = (
        "import medcnn.ingest.pipeline\nfrom medcnn.io import codecs\n"
        "print(codecs.deferred() == () and 'gdcm' in sys.modules\n"
        "      and 'requests' not in sys.modules)"
    )
    assert _python(code) == "True"


def _ingest(tmp_path: Path, scans: Path) -> str:
    config = {"results": str(tmp_path / "results"), "inputs": [str(scans)]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    code = (
        "from medcnn.cli import main\n"
        f"status = main(['ingest', '--config', {str(tmp_path / 'config.yaml')!r}])\n"
        f"print(status, [m for m in {CODEC_MODULES!r} if m in sys.modules])"
    )
    return _python(code)


def _ct(path: Path, patient: str, syntax: str | None = None) -> None:
    """A CT slice of PIXELS, uncompressed or compressed with pydicom's own encoder."""
    ds = base_dataset("1.2.840.10008.5.1.4.1.1.2", "CT", PatientID=patient)
    ds.set_pixel_data(PIXELS, "MONOCHROME2", 12)
    if syntax is not None:
        ds.compress(syntax, encoding_plugin="pydicom")
    path.parent.mkdir(parents=True)
    ds.save_as(path, enforce_file_format=True)


def test_ingest_of_uncompressed_scans_never_imports_a_codec(tmp_path):
    scans = tmp_path / "scans"
    _ct(scans / "IM1.dcm", "PLAIN01")
    assert _ingest(tmp_path, scans) == "0 []"
    (image,) = (tmp_path / "results" / "ingest").rglob("*.nii.gz")
    assert np.array_equal(np.sort(nib.load(image).get_fdata().ravel()), np.sort(PIXELS.ravel()))


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless])
def test_ingest_decodes_compressed_scans_with_the_deferred_codecs(tmp_path, syntax):
    scans = tmp_path / "scans"
    if syntax == RLELossless:
        _ct(scans / "IM1.dcm", "RLE0001", RLELossless)
    else:
        _compressed(scans / "IM1.dcm", syntax, "CODEC001")
    status, loaded = _ingest(tmp_path, scans).split(" ", 1)
    assert status == "0"
    # Loaded in the process that forks the bounded decoders, once (pylibjpeg: tried first
    # for RLE too, as in a plain import).
    assert "pylibjpeg" in loaded
    (image,) = (tmp_path / "results" / "ingest").rglob("*.nii.gz")
    assert np.array_equal(np.sort(nib.load(image).get_fdata().ravel()), np.sort(PIXELS.ravel()))


def test_forked_workers_load_the_codecs_they_need(tmp_path):
    """Two workers, three compressed series: each worker loads the libraries itself."""
    scans = tmp_path / "scans"
    for i, syntax in enumerate([JPEG2000Lossless, JPEGLSLossless, JPEG2000Lossless]):
        _compressed(scans / f"s{i}" / "IM1.dcm", syntax, f"FORK000{i}")
    config = {
        "results": str(tmp_path / "results"),
        "inputs": [str(scans)],
        "ingest": {"workers": 2},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    code = (
        "from medcnn.cli import main\n"
        f"print(main(['ingest', '--config', {str(tmp_path / 'config.yaml')!r}]))"
    )
    assert _python(code) == "0"
    images = sorted((tmp_path / "results" / "ingest").rglob("*.nii.gz"))
    assert len(images) == 3
    for image in images:
        values = np.sort(nib.load(image).get_fdata().ravel())
        assert np.array_equal(values, np.sort(PIXELS.ravel())), image


def test_loading_under_warnings_as_errors():
    """The checked decode turns warnings into errors; loading the codecs there still works."""
    code = (
        "import warnings\nfrom medcnn.io import codecs\n"
        "codecs.import_pydicom(defer_codecs=True)\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('error')\n"
        "    codecs.load_codecs('1.2.840.10008.1.2.4.90')\n"
        "from pydicom.pixels import get_decoder\n"
        "print(get_decoder('1.2.840.10008.1.2.4.90').available_plugins)"
    )
    assert "pylibjpeg" in _python(code)
