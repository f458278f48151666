"""De-identification: keyed pseudonyms and the list of attributes that never leave ingest.

Pseudonyms are an HMAC-SHA256 of the original value under a secret key, so the same patient
gets the same pseudonym in every run and every later batch, and nobody without the key can
go back from the pseudonym to the patient (a plain hash of an MRN can be brute-forced).

The key comes from ``deid.secret`` in the configuration, else from the environment variable
``MEDCNN_DEID_SECRET``; keep it out of version control and use the same one for every batch
of a cohort (a new key gives new pseudonyms).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SECRET_ENV = "MEDCNN_DEID_SECRET"
# Only fit for synthetic data: anyone can recompute pseudonyms made with a published key.
DEMO_SECRET = "medcnn-demo-secret-not-for-patient-data"

#: DICOM keywords that identify a patient; none of them is written after ingest unless the
#: configuration says ``deid.keep_identifiers: true``.
IDENTIFYING_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "ReferringPhysicianName",
    "InstitutionName",
    "InstitutionAddress",
    "StudyID",
    "PatientBirthName",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "OperatorsName",
    "PerformingPhysicianName",
    "RequestingPhysician",
    "IssuerOfPatientID",
)

#: DICOM date/time keywords: removed, or shifted per subject (``deid.dates``).
DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime")


def resolve_secret(configured: str | None) -> bytes:
    """The HMAC key: from the config, else ``$MEDCNN_DEID_SECRET``, else the demo key.

    Args:
        configured: ``deid.secret`` from the configuration, or None.
    """
    if configured:
        return configured.encode()
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    log.warning(
        "no de-identification secret configured (deid.secret or $%s); using the public demo "
        "key, which is only fit for synthetic data",
        SECRET_ENV,
    )
    return DEMO_SECRET.encode()


def pseudonym(value: str, secret: bytes, prefix: str, length: int = 10) -> str:
    """A stable pseudonym ``<prefix><hex>`` for an identifier.

    >>> pseudonym("MRN00012345", b"k", "sub-")
    'sub-fd4e0d1c4a'
    """
    digest = hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:length]}"


def date_shift_days(subject_key: str, secret: bytes, max_days: int = 365) -> int:
    """A per-subject date offset in ``[-max_days, max_days]``, never 0, from a keyed hash.

    Every date of one subject moves by the same number of days, so intervals between studies
    survive; the offset itself is never written anywhere.

    >>> date_shift_days("MRN1", b"k") == date_shift_days("MRN1", b"k")
    True
    """
    digest = hmac.new(secret, b"date-shift:" + subject_key.encode(), hashlib.sha256).digest()
    offset = int.from_bytes(digest[:8], "big") % (2 * max_days) - max_days
    return offset if offset < 0 else offset + 1


def shift_date(value: str, days: int) -> str | None:
    """Shift a DICOM DA (``YYYYMMDD``) or the date part of a DT by ``days``.

    Returns:
        the shifted date as ``YYYY-MM-DD`` (BIDS style), or None when ``value`` is not a date.
    """
    text = str(value).strip()[:8]
    try:
        day = dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None
    return (day + dt.timedelta(days=days)).isoformat()


def write_mapping(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """Write the pseudonym -> original table (TSV: pseudonym, kind, original) with mode 0600.

    The file is created with owner-only permissions before anything is written to it, so the
    identifiers are never readable by others, not even for a moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask and ignored if tmp existed
    with os.fdopen(fd, "w") as fh:
        fh.write("pseudonym\tkind\toriginal\n")
        for pseudo, kind, original in sorted(set(rows)):
            fh.write(f"{pseudo}\t{kind}\t{original}\n")
    tmp.replace(path)


#: UIDs replaced by keyed ones under ``deid.uids: replace`` (DICOM PS3.15 counts them as
#: identifiers: a UID can be looked up in the PACS it came from).
REPLACED_UID_KEYWORDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)


def keyed_uid(uid: str, secret: bytes) -> str:
    """A UID derived from ``uid`` under the key: the same input always gives the same UID.

    ``2.25.`` followed by a 128-bit integer (the UUID-derived root of PS3.5 B.2), so the
    result is a valid UID of at most 44 characters.

    >>> keyed_uid("1.2.3", b"k") == keyed_uid("1.2.3", b"k")
    True
    """
    digest = hmac.new(secret, b"uid:" + uid.encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
