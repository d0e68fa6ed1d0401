"""Pure logic of the image stage: the Dockerfile model, tags, labels, requirements, apt sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkpoint2svc.checkpoint import Checkpoint
from checkpoint2svc.errors import ImageError, WheelhouseError
from checkpoint2svc.image.base_image import apt_sources
from checkpoint2svc.image.build import _check_tag, _count_steps
from checkpoint2svc.image.dockerfile import ServiceDockerfile, render_dockerfile
from checkpoint2svc.image.engine import split_tag
from checkpoint2svc.image.labels import ImageLabels, labels_for
from checkpoint2svc.image.self_test import outputs_diff
from checkpoint2svc.image.wheelhouse import (
    _missing_wheel_message,
    fill_wheelhouse,
    image_requirements,
)


def _dockerfile(**labels: str) -> str:
    model = ServiceDockerfile(
        service="greet",
        base_image="base:1",
        requirements_image="reqs:abc",
        runtime_wheel="checkpoint2svc-0.1.0-py3-none-any.whl",
        http_port=8080,
        grpc_port=9090,
        labels=labels,
    )
    return render_dockerfile(model)


def test_layers_go_from_least_to_most_often_changed() -> None:
    text = _dockerfile()
    order = [
        "FROM base:1",
        "COPY --from=requirements",
        "COPY runtime/",
        "COPY state/",
        "COPY service/",
    ]
    positions = [text.index(step) for step in order]
    assert positions == sorted(positions)


def test_labels_cannot_break_or_expand_in_the_dockerfile() -> None:
    text = _dockerfile(**{"org.checkpoint2svc.notebook": 'my "best" $HOME.ipynb'})
    assert 'org.checkpoint2svc.notebook="my \\"best\\" \\$HOME.ipynb"' in text


def test_image_runs_non_root_with_an_init_and_a_healthcheck() -> None:
    text = _dockerfile()
    assert "USER 10001:10001" in text
    assert 'ENTRYPOINT ["dumb-init", "--"]' in text
    assert "HEALTHCHECK" in text and "checkpoint2svc.runtime.healthcheck" in text
    assert "EXPOSE 8080 9090" in text
    assert "pip install --no-index" in text


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("greeter", ("greeter", "latest")),
        ("greeter:v1", ("greeter", "v1")),
        ("team/greeter:v1", ("team/greeter", "v1")),
        ("registry.local:5000/greeter", ("registry.local:5000/greeter", "latest")),
        ("registry.local:5000/greeter:2", ("registry.local:5000/greeter", "2")),
    ],
)
def test_split_tag(reference: str, expected: tuple[str, str]) -> None:
    assert split_tag(reference) == expected


@pytest.mark.parametrize("tag", ["greeter:v1", "a/b-c_d:1.0", "localhost:5000/x/y:z"])
def test_valid_tags_pass(tag: str) -> None:
    _check_tag(tag)


@pytest.mark.parametrize("tag", ["Greeter:v1", "greeter:", "greeter:-x", "gr eeter", "a//b"])
def test_invalid_tags_say_what_a_tag_looks_like(tag: str) -> None:
    with pytest.raises(ImageError, match="is not a valid image name: use lowercase"):
        _check_tag(tag)


def test_labels_round_trip_and_name_what_is_missing(pinned: dict[str, Checkpoint]) -> None:
    checkpoint = pinned["greeter"]
    labels = labels_for(checkpoint.manifest, checkpoint.path)
    assert ImageLabels.from_docker(labels.to_docker(), "x") == labels
    partial = labels.to_docker()
    del partial["org.checkpoint2svc.signature-sha256"]
    with pytest.raises(ImageError, match="signature-sha256 label"):
        ImageLabels.from_docker(partial, "x")


def test_signature_hash_ignores_examples_but_not_types(pinned: dict[str, Checkpoint]) -> None:
    greeter, counter = pinned["greeter"].manifest, pinned["counter"].manifest
    assert counter.signature_sha256() == pinned["counter-shared"].manifest.signature_sha256()
    assert greeter.signature_sha256() != counter.signature_sha256()


def test_checkpoint_pins_win_over_the_runtimes(pinned: dict[str, Checkpoint]) -> None:
    manifest = pinned["greeter"].manifest
    manifest.requirements = [{"name": "dill", "version": "0.0.1", "direct": True}]
    try:
        requirements = image_requirements(manifest)
    finally:
        manifest.requirements = Checkpoint.open(pinned["greeter"].path).manifest.requirements
    assert "dill==0.0.1" in requirements
    assert any(r.startswith("grpcio==") for r in requirements)
    assert any(r.startswith("dumb-init==") for r in requirements)
    assert requirements == sorted(requirements, key=str.lower)


def test_missing_wheel_is_named() -> None:
    output = (
        "ERROR: Could not find a version that satisfies the requirement foo==1.0 "
        "(from versions: none)\nERROR: No matching distribution found for foo==1.0\n"
    )
    message = _missing_wheel_message(output, "3.11")
    assert "foo==1.0" in message and "Python 3.11" in message and "--wheelhouse" in message


def test_apt_sources_joins_one_line_and_deb822_files(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://mirror.invalid/debian bookworm main\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.sources").write_text("Types: deb\nSuites: bookworm\n")
    (tmp_path / "d" / "b.list.disabled").write_text("deb http://ignored bookworm main\n")
    text = apt_sources((tmp_path / "sources.list", tmp_path / "d"))
    assert "mirror.invalid" in text and "Types: deb" in text and "ignored" not in text


def test_no_apt_sources_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="--base-image"):
        apt_sources((tmp_path / "none",))


def test_cached_steps_are_counted_without_from() -> None:
    log = [
        "Step 1/4 : FROM reqs AS requirements", " ---> abc", "Step 2/4 : FROM base",
        "Step 3/4 : COPY a b", " ---> Using cache", "Step 4/4 : COPY c d", " ---> 123",
    ]  # fmt: skip
    assert _count_steps(log) == (2, 1)


def test_outputs_diff_names_the_outputs_and_shows_both_values() -> None:
    text = outputs_diff({"a": 1, "b": "x"}, {"a": 1, "b": "y"}, "REST")
    assert text.startswith("b differ over REST:")
    assert '-  "b": "x"' in text and '+  "b": "y"' in text


@pytest.mark.slow
def test_a_requirement_with_no_wheel_to_be_had_is_named(tmp_path: Path) -> None:
    """pip really asks the index (and the empty cache) for a distribution that does not exist."""
    missing = "checkpoint2svc-no-such-distribution==1.0"
    with pytest.raises(WheelhouseError, match=f"no wheel .* is to be had for {missing}"):
        fill_wheelhouse([missing], tmp_path / "dest", "3.11", cache=tmp_path / "cache")
