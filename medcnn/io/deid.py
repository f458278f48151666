"""De-identification: keyed pseudonyms and the list of attributes that never leave ingest.

Pseudonyms are an HMAC-SHA256 of the original value under a secret key, so the same patient
gets the same pseudonym in every run and every later batch, and nobody without the key can
go back from the pseudonym to the patient (a plain hash of an MRN can be brute-forced).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

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
)


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
