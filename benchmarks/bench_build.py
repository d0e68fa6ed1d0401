"""Benchmark: a cold image build versus a warm rebuild after editing only the cell's code.

Per case (a notebook and its target cell) and round, side by side in this process:

* **cold**: the requirements image for the checkpoint's pins is removed and the service image is
  built with ``no_cache=True``: every layer is built again (the host's wheelhouse, filled by an
  unmeasured warm-up build, stays: downloading from the index would measure the network);
* **warm**: the same notebook with the target cell's code edited, pinned (not timed) and built
  on top of the cold build: what a data scientist waits for after changing the cell.

Both timings are ``build_image`` end to end, self-test included (start the container, wait for
``/readyz``, replay the example over REST and gRPC). The script also reports the image's size
next to the base image's. Exits 1 when warm/cold exceeds ``--target`` (0.15), unless
``--no-check``. Needs the Docker engine and base image (``scripts/setup-engine``).

    .venv/bin/python benchmarks/bench_build.py [--rounds 3] [--no-check]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

from checkpoint2svc.checkpoint import Checkpoint, pin_notebook
from checkpoint2svc.image.base_image import default_base_image
from checkpoint2svc.image.build import build_image, requirements_tag
from checkpoint2svc.image.engine import docker_client
from checkpoint2svc.image.wheelhouse import image_requirements

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# notebook, cell, (text in the target cell, its edited form)
CASES = {
    "classifier": (
        "classifier.ipynb", "predict",
        ("confidence = float(", "confidence = 1.0 * float("),
    ),
    "greeter": ("greeter.ipynb", "greet", ("greeter.greet(name)", "greeter.greet(name).upper()")),
}  # fmt: skip


def pin_variant(root: Path, name: str, case: str, edited: bool) -> Checkpoint:
    notebook_name, cell, (before, after) = CASES[case]
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    text = (EXAMPLES / notebook_name).read_text()
    if before not in text:
        raise SystemExit(f"{notebook_name} no longer contains {before!r}; update CASES")
    (folder / notebook_name).write_text(text.replace(before, after) if edited else text)
    return pin_notebook(
        folder / notebook_name, cell, folder / "ckpt", force=True,
        progress=lambda _: None, warn=lambda _: None,
    )  # fmt: skip


def remove(client: docker.DockerClient, tag: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(tag, force=True)


def timed_build(checkpoint: Checkpoint, tag: str, no_cache: bool = False) -> tuple[float, int]:
    started = time.perf_counter()
    built = build_image(checkpoint, tag, no_cache=no_cache)
    return time.perf_counter() - started, built.size


def run_case(client: docker.DockerClient, case: str, rounds: int, root: Path) -> dict[str, float]:
    original = pin_variant(root, f"{case}-v1", case, edited=False)
    edited = pin_variant(root, f"{case}-v2", case, edited=True)
    requirements = requirements_tag(
        client.images.get(default_base_image()).id, image_requirements(original.manifest)
    )
    tags = (f"checkpoint2svc-bench/{case}:v1", f"checkpoint2svc-bench/{case}:v2")
    timed_build(original, tags[0])  # warm-up: fills the host's wheelhouse
    cold: list[float] = []
    warm: list[float] = []
    size = 0
    try:
        for round_ in range(rounds):
            remove(client, tags[1])
            remove(client, tags[0])
            remove(client, requirements)
            seconds, size = timed_build(original, tags[0], no_cache=True)
            cold.append(seconds)
            seconds, _ = timed_build(edited, tags[1])
            warm.append(seconds)
            print(f"{case} round {round_ + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s",
                  file=sys.stderr)  # fmt: skip
    finally:
        for tag in tags:
            remove(client, tag)
    base_size = client.images.get(default_base_image()).attrs["Size"]
    return {
        "cold": statistics.median(cold), "warm": statistics.median(warm),
        "ratio": statistics.median(warm) / statistics.median(cold),
        "size": size, "base_size": base_size,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.15)
    parser.add_argument("--no-check", action="store_true")
    parser.add_argument("cases", nargs="*", default=list(CASES), help=", ".join(CASES))
    args = parser.parse_args()
    if unknown := set(args.cases) - set(CASES):
        parser.error(f"unknown case {', '.join(unknown)}; choose from {', '.join(CASES)}")
    client = docker_client()
    root = Path(tempfile.mkdtemp(prefix="bench-build-"))
    results = {}
    try:
        for case in args.cases:
            results[case] = run_case(client, case, args.rounds, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mib = 1024 * 1024
    print("| case | cold build | warm rebuild (cell edited) | warm / cold | image | base image |")
    print("|---|---:|---:|---:|---:|---:|")
    for case, r in results.items():
        print(
            f"| {case} | {r['cold']:.1f} s | {r['warm']:.1f} s | {r['ratio']:.2f} | "
            f"{r['size'] / mib:.0f} MiB | {r['base_size'] / mib:.0f} MiB |"
        )
    failed = [c for c, r in results.items() if r["ratio"] > args.target]
    if failed and not args.no_check:
        print(f"warm/cold above {args.target} for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
