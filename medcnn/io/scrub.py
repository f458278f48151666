"""Scrub identifiers out of text that leaves ingest: free-text DICOM fields, input paths and
error messages.

Free text (SeriesDescription, StudyDescription, ProtocolName) is typed by people at the
scanner and may hold the patient's name or MRN; input paths are often named after the
patient (``Surname_MRN/``) or hold the PatientID and study date. What is removed:

* the patient's own identifiers (each component of PatientName, PatientID, AccessionNumber,
  other IDs, the birth date), case-insensitively;
* anything shaped like a date (``20190607``, ``2019-06-07``, ``07.06.2019``) or an ID (six
  or more digits in a row, or letters followed by four or more digits).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from pathlib import Path

REDACTED = "[x]"
#: Free-text DICOM keywords that may reach outputs.
FREE_TEXT_KEYWORDS = ("SeriesDescription", "StudyDescription", "ProtocolName")
_DATE = re.compile(
    r"(?<!\d)(?:(?:19|20)\d{2}[-./_]?(?:0[1-9]|1[0-2])[-./_]?(?:0[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:19|20)?\d{2})(?!\d)"
)
#: ID-shaped: six or more digits in a row, or letters followed by four or more digits
#: (``MRN7731``, ``ACC5512ZQXJ``); short numbers (sizes, slice counts, ``3mm``) stay.
_ID = re.compile(
    r"(?<![A-Za-z0-9])(?:[A-Za-z0-9]*\d{6,}|[A-Za-z]+\d{4,})[A-Za-z0-9]*(?![A-Za-z0-9])"
)
_ASCII_NAME = re.compile(r"^[\x20-\x7e]*$")


def identifier_parts(values: Iterable[str]) -> list[str]:
    """The searchable pieces of identifiers: each value, and each name component of two or
    more characters (``DOE^JANE`` gives ``DOE^JANE``, ``DOE``, ``JANE``), longest first."""
    parts: set[str] = set()
    for value in values:
        text = str(value or "").strip()
        if not text:
            continue
        parts.update(p for p in [text, *re.split(r"[\^\s,=_.-]+", text)] if _can_identify(p))
    return sorted(parts, key=len, reverse=True)


def _can_identify(part: str) -> bool:
    """A piece worth redacting: two characters or more, and not a short number (a StudyID
    "1" would otherwise eat every "1" of a message: sizes, counts, frame numbers)."""
    return len(part) >= 2 and not re.fullmatch(r"\d{1,3}", part)


def scrub_text(text: str, identifiers: Iterable[str] = ()) -> str:
    """``text`` without the given identifiers and without date- or ID-shaped tokens.

    >>> scrub_text("CHEST PA DOE 20190607 MRN7731", ["DOE^JANE"])
    'CHEST PA [x] [x] [x]'
    """
    out = str(text)
    for part in identifier_parts(identifiers):
        # Whole words only: a name component "DOE" must not eat "does".
        pattern = r"(?<![A-Za-z0-9])" + re.escape(part) + r"(?![A-Za-z0-9])"
        out = re.sub(pattern, REDACTED, out, flags=re.IGNORECASE)
    out = _DATE.sub(REDACTED, out)
    return _ID.sub(_unless_scan_name, out)


def _unless_scan_name(match: re.Match[str]) -> str:
    """An ID-shaped token, redacted unless it is a scan word and a short number (IM0001)."""
    token = match.group(0)
    parts = re.fullmatch(r"([A-Za-z]+)(\d{1,6})", token)
    if parts and parts.group(1).lower() in PLAIN_WORDS:
        return token
    return REDACTED


def free_text(text: str, identifiers: Iterable[str], policy: str) -> str:
    """A free-text DICOM value as ``deid.free_text`` says: ``scrub``, ``remove`` or ``keep``."""
    if policy == "keep":
        return str(text)
    if policy == "remove":
        return ""
    return scrub_text(text, identifiers)


#: Words a plain scan-file or folder name may be made of (with digits of up to six places).
PLAIN_WORDS = frozenset(
    """dicom dcm ima img im image images i mr ct cr dx pt pet us xa mg nm ot sm se ser
    series st study s slice slices scan scans file files frame frames exp export data
    nifti nii gz png jpg jpeg tif tiff bmp mask masks label labels seg roi gt flair t1 t1ce
    t2 t1w t2w dwi adc bold pd train test val tiles tile overlay instances instance inputs
    input raw case cases volume vol a b c d e f g h j k l m n o p q r t u v w x y z""".split()
)
_TOKENS = re.compile(r"[A-Za-z]+|\d+|[._-]")


def plain_name(name: str) -> bool:
    """True for a name that cannot identify anyone: known scan words, short numbers and
    separators only (``IM000012.dcm``, ``slice_003``, ``FLAIR.nii.gz``, ``images``)."""
    if not name or not _ASCII_NAME.match(name) or name != name.strip():
        return False
    tokens = _TOKENS.findall(name)
    if "".join(tokens) != name or sum(t.isdigit() for t in tokens) > 3:
        return False  # more than three numbers: UID-shaped (1.2.840.113619...), an identifier
    for token in tokens:
        if token.isdigit():
            if len(token) > 6:
                return False
        elif token.isalpha() and token.lower() not in PLAIN_WORDS:
            return False
    return True


def _extension(name: str) -> str:
    lower = name.lower()
    for suffix in (".nii.gz", ".nii", ".dcm", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if lower.endswith(suffix):
            return suffix
    return ""


def path_component(name: str, secret: bytes, is_file: bool) -> str:
    """A path component as it may be shown: itself when plain, else a keyed pseudonym
    (``f-<hex>.dcm`` for a file, keeping its extension; ``d-<hex>`` for a folder)."""
    if plain_name(name):
        return name
    raw = os.fsencode(name)  # names that are not valid UTF-8 pseudonymise too
    digest = hmac.new(secret, b"path:" + raw, hashlib.sha256).hexdigest()[:10]
    return f"f-{digest}{_extension(name)}" if is_file else f"d-{digest}"


def printable(name: str) -> str:
    """A file name as text that tables can hold: bytes that are not UTF-8 become U+FFFD,
    control characters (tabs, newlines) ``?``."""
    text = os.fsencode(name).decode("utf-8", "replace")
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)


def shown_path(path: Path, folders: list[Path], secret: bytes, show: bool = False) -> str:
    """How an input path appears in tables, logs and reports.

    Relative to its input folder and prefixed with that folder's name; each component that
    is not a plain scan-file name replaced by a keyed pseudonym, unless ``show``
    (``ingest.show_paths``) asks for the real names. A path outside every input folder
    appears as a pseudonym of the whole path.
    """
    for folder in folders:
        try:
            relative = path.relative_to(folder)
        except ValueError:
            continue
        parts = [folder.name, *relative.parts]
        break
    else:
        parts = [str(path)]
    if show:
        return "/".join(printable(p) for p in parts)
    last = len(parts) - 1
    return "/".join(path_component(p, secret, i == last) for i, p in enumerate(parts))


def scrub_message(
    message: str, path: Path, shown: str, identifiers: Iterable[str], show: bool = False
) -> str:
    """An error message fit for outputs: the file's real path replaced by how it is shown,
    its other components (unless ``show``) and identifiers redacted, ID-shaped text too."""
    text = str(message).replace(str(path), shown)
    for part in sorted(set(path.parts) - {"/"}, key=len, reverse=True):
        # Short numbers (a folder "1", "25") identify nobody and would eat the sizes and
        # counts of the message; every other component goes, as a whole word.
        if show or plain_name(part) or part in shown or re.fullmatch(r"\d{1,5}", part):
            continue
        text = re.sub(r"(?<![A-Za-z0-9])" + re.escape(part) + r"(?![A-Za-z0-9])", REDACTED, text)
    text = text.encode("utf-8", "replace").decode("utf-8")
    # The shown path is already safe (pseudonyms): scrub around it, never inside it.
    pieces = [scrub_text(piece, identifiers) for piece in text.split(shown)] if shown else [text]
    return shown.join(pieces).replace(REDACTED + REDACTED, REDACTED)
