"""Who is in the demo cohort: patients (names, sex, anatomy), their studies and findings,
drawn from one seed."""

from __future__ import annotations

import datetime as dt

import numpy as np

from medcnn.demo.cxr_dicom import DemoPatient, DemoStudy

#: The two label values of ``labels.csv``: positive first.
FINDINGS = ("pneumonia", "no_finding")


_FAMILY_NAMES = (
    "KOWALSKI", "NOWAK", "SMITH", "GARCIA", "MUELLER", "ROSSI", "TANAKA", "OKAFOR",
    "JOHANSSON", "MARTIN", "HERNANDEZ", "NGUYEN", "WILSON", "PETROV", "SILVA", "YILMAZ",
    "LINDQVIST", "MORENO", "WOJCIK", "SCHMIDT", "OLSEN", "KIM", "PATEL", "MURPHY",
)  # fmt: skip
_GIVEN_NAMES_F = (
    "ANNA", "MARIA", "EMMA", "SOFIA", "JULIA", "LAURA", "HANNA", "OLIVIA", "CHLOE",
    "IRENE", "NADIA", "ZOFIA", "MIREILLE", "ASTRID", "GRACE", "YUKI",
)  # fmt: skip
_GIVEN_NAMES_M = (
    "JAN", "PIOTR", "JOHN", "LUCAS", "MATEO", "HANS", "MARCO", "KENJI", "OLIVER", "TOMAS",
    "ERIK", "OMAR", "NIKOLAI", "SAMUEL", "JONAS", "VICTOR",
)  # fmt: skip


def balanced(rng: np.random.Generator, n: int, values: list, counts: list[int]) -> list:
    """A shuffled list of ``n`` values with ``counts[i]`` copies of ``values[i]``."""
    items = [v for v, c in zip(values, counts, strict=True) for _ in range(c)]
    assert len(items) == n
    return [items[int(i)] for i in rng.permutation(n)]


def draw_patients(rng: np.random.Generator, n: int, suffix: str, seed: int) -> list[DemoPatient]:
    patients = []
    seen: set[str] = set()
    for i in range(n):
        while True:
            pid = f"MRN{int(rng.integers(10_000_000, 100_000_000)):08d}{suffix}"
            if pid not in seen:
                seen.add(pid)
                break
        sex = "F" if rng.random() < 0.5 else "M"
        given_pool = _GIVEN_NAMES_F if sex == "F" else _GIVEN_NAMES_M
        family = _FAMILY_NAMES[int(rng.integers(len(_FAMILY_NAMES)))] + suffix
        given = given_pool[int(rng.integers(len(given_pool)))]
        birth = dt.date(1935, 1, 1) + dt.timedelta(days=int(rng.integers(0, 70 * 365)))
        patients.append(
            DemoPatient(
                index=i,
                patient_id=pid,
                family=family,
                given=given,
                sex=sex,
                birth=birth,
                anatomy=draw_anatomy(np.random.default_rng((seed, 1, i))),
            )
        )
    return patients


def draw_anatomy(rng: np.random.Generator) -> dict[str, float]:
    """Per-patient body shape, in units of image rows (see :func:`render_radiograph`)."""
    return {
        "body_half_width": rng.uniform(0.36, 0.42),
        "lung_dx": rng.uniform(0.17, 0.20),
        "lung_cy": rng.uniform(-0.04, 0.02),
        "lung_rx": rng.uniform(0.115, 0.135),
        "lung_ry": rng.uniform(0.25, 0.30),
        "heart_rx": rng.uniform(0.12, 0.15),
        "heart_ry": rng.uniform(0.10, 0.12),
        "heart_dx": rng.uniform(0.03, 0.06),
        "rib_start": rng.uniform(-0.33, -0.29),
        "rib_step": rng.uniform(0.050, 0.058),
        "rib_bend": rng.uniform(0.9, 1.4),
        "tissue": rng.uniform(0.46, 0.56),
        "lung_dark": rng.uniform(0.28, 0.34),
    }


def draw_studies(
    rng: np.random.Generator, patients: list[DemoPatient], image_size: int, suffix: str
) -> list[DemoStudy]:
    n_pat = len(patients)
    n_two = max(1, round(n_pat / 3))
    two = set(int(i) for i in rng.choice(n_pat, size=n_two, replace=False))
    slots = [(p, k) for p in patients for k in range(1 + (p.index in two))]
    n = len(slots)

    n_pos = min(n - 1, max(1, round(0.45 * n)))
    findings = balanced(rng, n, list(FINDINGS), [n_pos, n - n_pos])
    n_mono1 = min(n - 1, max(1, round(0.2 * n)))
    photometric = balanced(rng, n, ["MONOCHROME1", "MONOCHROME2"], [n_mono1, n - n_mono1])
    n_cr = n // 2
    modality = balanced(rng, n, ["CR", "DX"], [n_cr, n - n_cr])
    bits = balanced(rng, n, [12, 14, 16], [n - 2 * (n // 3), n // 3, n // 3])
    rescale_opts: list = [None, (1.0, 0.0), (2.0, -1024.0)]
    rescale = balanced(rng, n, rescale_opts, [n - 2 * (n // 3), n // 3, n // 3])
    n_ps = n // 2
    spacing_tag = balanced(rng, n, ["PixelSpacing", "ImagerPixelSpacing"], [n_ps, n - n_ps])
    n_ns = max(1, round(0.15 * n))
    non_square = balanced(rng, n, [True, False], [n_ns, n - n_ns])

    base_spacing = 0.14 * 2048 / image_size
    accessions: set[str] = set()
    studies = []
    first_date: dt.date | None = None
    for i, (patient, k) in enumerate(slots):
        if k == 0:
            first_date = dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 5 * 365)))
            date = first_date
        else:
            assert first_date is not None
            date = first_date + dt.timedelta(days=int(rng.integers(14, 500)))
        hh, mm, ss = (int(v) for v in rng.integers((7, 0, 0), (20, 60, 60)))
        time = f"{hh:02d}{mm:02d}{ss:02d}"
        while True:
            if rng.random() < 0.5:
                acc = f"{int(rng.integers(10**9, 10**10)):010d}{suffix}"
            else:
                acc = f"ACC{int(rng.integers(10**6, 10**7)):07d}{suffix}"
            if acc not in accessions:
                accessions.add(acc)
                break
        studies.append(
            DemoStudy(
                index=i,
                patient=patient,
                number=k + 1,
                date=date,
                time=time,
                accession=acc,
                finding=findings[i],
                photometric=photometric[i],
                modality=modality[i],
                bits_stored=int(bits[i]),
                rescale=rescale[i],
                spacing_tag=spacing_tag[i],
                spacing_mm=round(base_spacing * rng.uniform(0.95, 1.05), 4),
                view="PA" if rng.random() < 0.75 else "AP",
                rows=image_size,
                cols=int(image_size * 0.875) if non_square[i] else image_size,
            )
        )
    return studies
