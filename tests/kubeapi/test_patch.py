"""Patch formats (pure)."""

from __future__ import annotations

import pytest

from .errors import ApiError
from .patch import json_patch, merge_patch, strategic_merge_patch

POD = {
    "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
    "spec": {"containers": [{"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}]},
    "status": {"conditions": [{"type": "Ready", "status": "False"}]},
}


def test_merge_patch_maps_merge_null_deletes_lists_replace() -> None:
    out = merge_patch(
        POD,
        {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"containers": [{"name": "c3"}]}},
    )
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["spec"]["containers"] == [{"name": "c3"}]
    assert POD["metadata"]["labels"] == {"a": "1", "b": "2"}  # input untouched


def test_strategic_merge_patch_merges_lists_by_key() -> None:
    out = strategic_merge_patch(
        POD,
        {
            "metadata": {"labels": {"c": "3"}, "finalizers": ["y"]},
            "spec": {"containers": [{"name": "c2", "image": "new"}, {"name": "c3", "image": "i3"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    assert out["metadata"]["labels"] == {"a": "1", "b": "2", "c": "3"}
    assert out["metadata"]["finalizers"] == ["x", "y"]
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == [
        ("c1", "i1"),
        ("c2", "new"),
        ("c3", "i3"),
    ]
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


def test_strategic_merge_patch_directives() -> None:
    out = strategic_merge_patch(POD, {"spec": {"containers": [{"name": "c1", "$patch": "delete"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["c2"]
    out = strategic_merge_patch(POD, {"metadata": {"labels": {"$patch": "replace", "z": "9"}}})
    assert out["metadata"]["labels"] == {"z": "9"}


def test_json_patch() -> None:
    out = json_patch(
        POD,
        [
            {"op": "test", "path": "/metadata/labels/a", "value": "1"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "9"},
            {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1x", "value": "y"},
            {"op": "remove", "path": "/spec/containers/0"},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "z"},
            {"op": "copy", "from": "/metadata/labels/b", "path": "/metadata/labels/b2"},
            {"op": "move", "from": "/metadata/labels/b2", "path": "/metadata/labels/b3"},
        ],
    )
    assert out["metadata"]["labels"] == {"a": "9", "b": "2", "app.kubernetes.io/x": "y", "b3": "2"}
    assert [c["name"] for c in out["spec"]["containers"]] == ["c2"]
    assert out["metadata"]["finalizers"] == ["x", "z"]
    with pytest.raises(ApiError) as info:
        json_patch(POD, [{"op": "test", "path": "/metadata/labels/a", "value": "2"}])
    assert info.value.code == 422
