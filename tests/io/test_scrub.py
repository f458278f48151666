"""Scrubbing identifiers from free text, paths and messages; keyed UIDs."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from medcnn.io import dicom
from medcnn.io.deid import keyed_uid
from medcnn.io.dicom import DicomReadError, check_decoded, decoded_pixels
from medcnn.io.scrub import free_text, plain_name, scrub_message, scrub_text, shown_path


def test_free_text_loses_the_patient_and_id_shapes_but_keeps_the_rest():
    ids = ["DOE^JANE", "MRN7731ZQXJ", "19600314"]
    text = "T2 FLAIR 3mm Doe Jane 2019-06-07 MRN7731ZQXJ 07.06.2019 acc 12345678 does 8x6x4"
    assert scrub_text(text, ids) == "T2 FLAIR 3mm [x] [x] [x] [x] [x] acc [x] does 8x6x4"
    assert free_text(text, ids, "remove") == ""
    assert free_text(text, ids, "keep") == text


def test_plain_names_and_pseudonyms():
    for name in ("IM000012.dcm", "slice_003", "FLAIR.nii.gz", "images", "SE0001", "1.dcm"):
        assert plain_name(name), name
    for name in ("Smith_John", "1.2.840.113619.2.55.dcm", "MRN1234567", "notes.dcm", "Jo"):
        assert not plain_name(name), name
    root = Path("/data/export")
    shown = shown_path(root / "Surname_MRN12345" / "IM0001.dcm", [root], b"k")
    assert re.fullmatch(r"export/d-[0-9a-f]{10}/IM0001\.dcm", shown)
    assert shown == shown_path(root / "Surname_MRN12345" / "IM0001.dcm", [root], b"k")
    assert shown != shown_path(root / "Surname_MRN12345" / "IM0001.dcm", [root], b"other")
    raw = Path(os.fsdecode(b"/data/export/\xff\xfe\nname.dcm"))
    assert shown_path(raw, [root], b"k", show=True) == "export/\ufffd\ufffd?name.dcm"
    assert re.fullmatch(r"export/f-[0-9a-f]{10}\.dcm", shown_path(raw, [root], b"k"))
    assert shown_path(Path("/elsewhere/x.dcm"), [root], b"k").startswith("f-")


def test_messages_lose_the_path_and_the_identifiers():
    path = Path("/data/export/Surname_MRN12345/IM0001.dcm")
    shown = shown_path(path, [Path("/data/export")], b"k")
    message = f"cannot read {path}: value 'DOE^JANE' in Surname_MRN12345"
    out = scrub_message(message, path, shown, ["DOE^JANE"])
    assert "Surname" not in out and "DOE" not in out and shown in out


def test_keyed_uids_are_valid_stable_and_keyed():
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert keyed_uid(uid, b"k") == keyed_uid(uid, b"k") != keyed_uid(uid, b"j")
    assert re.fullmatch(r"2\.25\.[1-9]\d*", keyed_uid(uid, b"k"))
    assert len(keyed_uid(uid, b"k")) <= 64


def _header(syntax: str, rows: int = 4, columns: int = 3) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.Rows, ds.Columns, ds.BitsStored, ds.PixelRepresentation = rows, columns, 12, 0
    return ds


def test_decoded_pixels_must_fill_the_declared_frame_and_bits():
    ds = _header("1.2.840.10008.1.2.4.90")
    check_decoded(np.zeros((4, 3), np.uint16), ds, "J2K")
    with pytest.raises(DicomReadError, match="do not fill the declared frames"):
        check_decoded(np.zeros((4, 2), np.uint16), ds, "J2K")
    with pytest.raises(DicomReadError, match="exceed BitsStored 12"):
        check_decoded(np.full((4, 3), 5000, np.uint16), ds, "J2K")
    # Native data may carry overlays in unused high bits: not checked there.
    check_decoded(np.full((4, 3), 5000, np.uint16), _header("1.2.840.10008.1.2.1"), "native")


def test_jpeg2000_decode_warnings_are_errors(monkeypatch):
    def warn_and_decode(self):
        warnings.warn("codestream: tile-part length mismatch", UserWarning, stacklevel=1)
        return np.zeros((4, 3), np.uint16)

    monkeypatch.setattr(dicom.Dataset, "pixel_array", property(warn_and_decode))
    with pytest.raises(DicomReadError, match="decoder warned .* tile-part length mismatch"):
        decoded_pixels(_header("1.2.840.10008.1.2.4.90"))
    # A native file's decode warnings are not errors.
    assert decoded_pixels(_header("1.2.840.10008.1.2.1")).shape == (4, 3)


def test_short_numeric_folders_do_not_eat_the_message():
    """A folder named "1" is no identifier; replacing it everywhere garbled the sizes."""
    path = Path("/data/export/1/25/Surname_MRN12345/IM0001.dcm")
    shown = shown_path(path, [Path("/data/export")], b"k")
    message = (
        f"{path}: 1,024 bytes present, 131,072 declared (256 x 256 x 1 frame(s) x 1 sample(s))"
    )
    out = scrub_message(message, path, shown, [])
    assert out.endswith(
        "1,024 bytes present, 131,072 declared (256 x 256 x 1 frame(s) x 1 sample(s))"
    )
    assert "Surname" not in out and shown in out


def test_a_short_numeric_identifier_does_not_eat_the_numbers_of_a_message():
    """StudyID "1" is an identifier by PS3.15, but redacting every "1" garbled the sizes."""
    text = "256 x 256 x 1 frame(s) x 1 sample(s), study 12345"
    assert scrub_text(text, ["1", "12345"]) == "256 x 256 x 1 frame(s) x 1 sample(s), study [x]"
