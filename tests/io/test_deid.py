from __future__ import annotations

from medcnn.io.deid import DEMO_SECRET, SECRET_ENV, pseudonym, resolve_secret


def test_pseudonym_is_stable_and_keyed():
    a = pseudonym("MRN00012345", b"key-1", "sub-")
    assert a == pseudonym("MRN00012345", b"key-1", "sub-")
    assert a != pseudonym("MRN00012345", b"key-2", "sub-")
    assert a != pseudonym("MRN00012346", b"key-1", "sub-")
    assert a.startswith("sub-") and len(a) == 14
    assert "12345" not in a


def test_secret_precedence(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "from-env")
    assert resolve_secret("from-config") == b"from-config"
    assert resolve_secret(None) == b"from-env"
    monkeypatch.delenv(SECRET_ENV)
    assert resolve_secret(None) == DEMO_SECRET.encode()
