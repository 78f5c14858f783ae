"""Component naming rules on hand-written names."""

from __future__ import annotations

import pytest

from foresight import components


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("embed", "embed"),
        ("logits", "logits"),
        ("a0.h3", "head"),
        ("a11.h10", "head"),
        ("m7", "mlp"),
        ("a1.h2->m3", "edge"),
        ("embed->logits", "edge"),
    ],
)
def test_kind(name: str, kind: str) -> None:
    assert components.kind(name) == kind
    assert components.is_member_kind(name) == (kind in components.MEMBER_KINDS)


@pytest.mark.parametrize("name", ["a1", "h1", "mlp3", "a1.h", "m", "Embed", ""])
def test_kind_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="not embed"):
        components.kind(name)


def test_position() -> None:
    assert components.position("embed", 4) == (-1, -1)
    assert components.position("logits", 4) == (4, -1)
    assert components.position("a2.h5", 4) == (2, 5)
    assert components.position("m3", 4) == (3, -1)
    assert components.position("a3", 4) == (3, -1)  # the input of layer 3's attention
    assert components.position("a1.h0->logits", 4) == (1, 0)
    assert components.position("embed->m0", 4) == (-1, -1)


def test_names_and_edges() -> None:
    assert (components.head(2, 5), components.mlp(3), components.attention_input(1)) == ("a2.h5", "m3", "a1")
    assert components.edge("a0.h1", "m2") == "a0.h1->m2"
    assert components.edge_ends("a0.h1->m2") == ("a0.h1", "m2")
    with pytest.raises(ValueError, match="not an edge"):
        components.edge_ends("m2")
    assert components.members(["embed", "a0.h0", "m1", "logits", "a0.h0->m1"]) == ["a0.h0", "m1"]
