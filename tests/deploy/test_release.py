"""The GitOps loop's files agree with each other: the pipeline builds the Containerfiles
that exist and rewrites image entries the production overlay really has; Argo CD watches
that overlay and leaves the manager's replica count alone."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.rendered import ROOT


def test_the_pipeline_tests_builds_existing_images_and_pins_them_in_production() -> None:
    pipeline = yaml.safe_load((ROOT / ".github" / "workflows" / "pipeline.yml").read_text())
    jobs = pipeline["jobs"]
    assert any("bash .ci/run" in step.get("run", "") for step in jobs["test"]["steps"])
    assert jobs["images"]["needs"] == "test"
    assert jobs["gitops"]["needs"] == "images"
    built = {
        entry["image"]: entry["file"] for entry in jobs["images"]["strategy"]["matrix"]["include"]
    }
    for file in built.values():
        assert (ROOT / file).is_file(), file
    production = yaml.safe_load((ROOT / "k8s/overlays/production/kustomization.yaml").read_text())
    pinned = {entry["name"] for entry in production["images"]}
    script = " ".join(step.get("run", "") for step in jobs["gitops"]["steps"])
    for image in built:
        assert f"ghcr.io/webterm/{image}" in pinned
    assert 'kustomize edit set image "ghcr.io/webterm/${image}=' in script
    assert "[skip ci]" in script  # the release commit does not trigger another release


def test_argo_cd_syncs_the_production_overlay_and_ignores_the_pool_size() -> None:
    app = yaml.safe_load((ROOT / "k8s" / "argocd" / "application.yaml").read_text())
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "kustomization.yaml").is_file()
    assert source["path"] == "k8s/overlays/production"
    assert app["spec"]["destination"]["namespace"] == "webterm"
    (ignored,) = app["spec"]["ignoreDifferences"]
    assert (ignored["kind"], ignored["name"], ignored["jsonPointers"]) == (
        "StatefulSet", "terminal", ["/spec/replicas"]
    )  # fmt: skip
    assert Path(ROOT / ".github" / "workflows" / "pipeline.yml").exists()
