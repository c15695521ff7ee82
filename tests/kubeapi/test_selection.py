"""Label and field selectors (pure)."""

from __future__ import annotations

import pytest

from .errors import ApiError
from .selection import (
    from_label_selector_object,
    parse_field_selector,
    parse_label_selector,
    validate_labels,
)

LABELS = {"app": "web", "tier": "front", "version": "3"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db, cache)", True),
        ("app notin (web)", False),
        ("missing notin (web)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("version>2", True),
        ("version<3", False),
        ("app=web, !missing, tier in (front)", True),
        ("app.kubernetes.io/component=terminal", False),
    ],
)
def test_label_selector_matches(text: str, expected: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is expected


@pytest.mark.parametrize(
    "text",
    ["app=", "=web", "app in web", "app in (web", "a b", "app=web,", "-x=1", "a=" + "v" * 64],
)
def test_label_selector_syntax_errors_are_400(text: str) -> None:
    if text == "app=":
        assert parse_label_selector(text).matches({"app": ""})
        return
    with pytest.raises(ApiError) as info:
        parse_label_selector(text)
    assert info.value.code == 400
    assert info.value.reason == "BadRequest"


def test_label_selector_object() -> None:
    sel = from_label_selector_object(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "web"})
    assert str(sel) == "app=web,tier in (front)"
    assert not from_label_selector_object(None).matches(LABELS)
    assert from_label_selector_object({}).matches(LABELS)


def test_field_selector() -> None:
    sel = parse_field_selector("metadata.name=p1,status.phase!=Failed", "Pod")
    assert sel.matches({"metadata": {"name": "p1"}, "status": {"phase": "Running"}})
    assert not sel.matches({"metadata": {"name": "p1"}, "status": {"phase": "Failed"}})
    assert sel.exact_name() == "p1"
    with pytest.raises(ApiError) as info:
        parse_field_selector("spec.containers=x", "Pod")
    assert info.value.code == 400
    assert "field label not supported" in info.value.message


def test_label_validation() -> None:
    assert validate_labels({"app.kubernetes.io/component": "terminal", "x": ""}) == []
    causes = validate_labels({"owner": "a" * 64, "bad key!": "v", "-x": "y"})
    assert len(causes) == 3
    assert any("must be no more than 63 characters" in message for _, _, message in causes)
