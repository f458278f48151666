from __future__ import annotations

import numpy as np
import pytest

from medcnn.data.labels import CHESTXRAY14, LabelScheme


def test_binary_keeps_the_one_zero_index_text():
    scheme = LabelScheme.from_target({"column": "finding", "positive": "pneumonia"})
    assert (scheme.kind, scheme.labels, scheme.n_outputs) == ("binary", ("pneumonia",), 1)
    assert [scheme.encode(v) for v in ("pneumonia", "no_finding", "", None)] == ["1", "0", "", ""]
    np.testing.assert_array_equal(scheme.decode(["1", "0"]), [[1.0], [0.0]])


def test_multiclass_one_hot_and_unknown_values_unlabelled():
    scheme = LabelScheme.from_target({"column": "view", "classes": ["PA", "AP", "LL"]})
    assert scheme.encode("AP") == "0|1|0"
    assert scheme.encode("XX") == "" and scheme.encode("XX") == ""
    assert scheme.summary()["unknown_values"] == {"XX": 2}
    probs = scheme.probabilities(np.array([[0.0, 0.0, np.log(2.0)]]))
    np.testing.assert_allclose(probs, [[0.25, 0.25, 0.5]])


def test_nih_chestxray14_finding_labels():
    scheme = LabelScheme.from_target(
        {"column": "Finding Labels", "labels": "chestxray14", "separator": "|"}
    )
    assert scheme.labels == CHESTXRAY14 and scheme.n_outputs == 14
    vector = scheme.decode([scheme.encode("Cardiomegaly|Effusion")])[0]
    assert vector.tolist() == [0, 1, 1] + [0] * 11
    assert scheme.encode("No Finding") == "|".join(["0"] * 14)
    # A finding outside the scheme is ignored, and counted so a typo shows in plans.json.
    assert scheme.decode([scheme.encode("Efusion|Mass")])[0][4] == 1.0
    assert scheme.unknown == {"Efusion": 1}
    np.testing.assert_allclose(scheme.probabilities(np.zeros((1, 14))), 0.5)


def test_decode_names_a_scheme_mismatch():
    scheme = LabelScheme.from_target({"column": "f", "labels": ["a", "b"]})
    with pytest.raises(ValueError, match="has 1 entries.*2 labels"):
        scheme.decode(["1"])


def test_stratum_is_the_rarest_positive_label():
    scheme = LabelScheme.from_target({"column": "f", "labels": ["a", "b", "c"]})
    images = np.array([[1, 0, 0], [0, 0, 1]])
    assert scheme.stratum(images, frequency=np.array([50, 20, 5])) == "c"
    assert scheme.stratum(np.zeros((2, 3))) == "none"
