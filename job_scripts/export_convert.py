"""The export's converter: llama.cpp's ``convert_hf_to_gguf.py``, from the pinned sdist.

Standard library only; part of ``export_gguf.py`` (stages 2, convert). The
pip-installed llama_cpp package ships only the compiled library, so the converter
comes from the *same* llama-cpp-python sdist, pinned by version and sha256
(:func:`ensure_converter`), and runs with that sdist's ``gguf-py``
(:func:`convert_to_f16`). :class:`StageError` and :func:`stage` label a failure
with the export stage it happened in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from protocol import ConfigError

# The converter must match the llama.cpp that llama-cpp-python compiled: both come
# from this one sdist. Bump the version here and in export_gguf.py's PEP 723 header
# together, and record the new sdist's sha256 (PyPI's simple index lists it).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SDIST_SHA256 = {
    "0.3.36": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
}
# Only these parts of vendor/llama.cpp are needed to run convert_hf_to_gguf.py.
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "models/templates/")
CACHE_ENV = "CI_RUNNER_CACHE_DIR"  # default: $XDG_CACHE_HOME/ci-runner or ~/.cache/ci-runner
SDIST_ENV = "CI_RUNNER_LLAMA_CPP_SDIST"  # optional: a local copy of the sdist tarball


class StageError(RuntimeError):
    """A stage failed; ``stage`` tells the runner which one."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


@contextlib.contextmanager
def stage(name: str, timings: dict[str, float] | None = None):
    """Label any crash inside the block with the stage it happened in; record in
    ``timings`` how long the stage took when it succeeds."""
    started = time.monotonic()
    try:
        yield
    except (ConfigError, StageError):
        raise
    except Exception as exc:
        raise StageError(name, f"{type(exc).__name__}: {exc}") from exc
    if timings is not None:
        timings[name] = round(time.monotonic() - started, 2)


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ci-runner"


def ensure_converter(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """The folder holding ``convert_hf_to_gguf.py``, ``conversion/`` and ``gguf-py/``.

    The pip-installed llama_cpp package ships only the compiled library, not the
    converter, so the converter comes from the *same* sdist, pinned by version and
    sha256: it is downloaded once (from the pip index, as pip would), checked, and
    only the converter's parts are kept in ``<cache>/llama.cpp-<version>/``.
    Run it with that folder's ``gguf-py`` first on the path, never PyPI's older ``gguf``.
    """
    target = cache_root() / f"llama.cpp-{version}"
    if (target / "convert_hf_to_gguf.py").is_file() and (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".llama.cpp-{version}-", dir=target.parent) as tmp:
        sdist = _obtain_sdist(version, Path(tmp))
        staging = Path(tmp) / "converter"
        _extract_converter(sdist, version, staging)
        (staging / ".complete").write_text(sha256_file(sdist) + "\n", encoding="utf-8")
        try:
            staging.rename(target)  # atomic: a concurrent run either wins or finds ours
        except OSError:
            if not (target / ".complete").is_file():
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    return target


def _obtain_sdist(version: str, work: Path) -> Path:
    """The sdist tarball: a local copy if given, else from the package index."""
    expected = SDIST_SHA256.get(version)
    local = os.environ.get(SDIST_ENV)
    candidates = []
    if local:
        candidates.append(("local copy", lambda: Path(local)))
    candidates.append(("package index", lambda: _download_sdist_simple(version, work)))
    candidates.append(("pip download", lambda: _download_sdist_pip(version, work)))
    errors = []
    for how, get in candidates:
        try:
            path = get()
        except Exception as exc:  # try the next source; report all if none works
            errors.append(f"{how}: {exc}")
            continue
        digest = sha256_file(path)
        if expected and digest != expected:
            errors.append(f"{how}: sha256 {digest} is not the pinned {expected}")
            continue
        print(f"converter: llama-cpp-python {version} sdist from {how} ({digest[:12]})")
        return path
    raise StageError(
        "convert", f"cannot obtain llama-cpp-python {version} sdist: " + "; ".join(errors)
    )


def _index_url() -> str:
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name].rstrip("/")
    return "https://pypi.org/simple"


def _download_sdist_simple(version: str, work: Path) -> Path:
    """Fetch the sdist through the index's JSON simple API (PEP 691), hash-checked."""
    filename = f"llama_cpp_python-{version}.tar.gz"
    request = urllib.request.Request(
        f"{_index_url()}/llama-cpp-python/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    entry = next((f for f in files if f["filename"] == filename), None)
    if entry is None:
        raise FileNotFoundError(f"{filename} is not on {_index_url()}")
    published = entry.get("hashes", {}).get("sha256")
    pinned = SDIST_SHA256.get(version)
    if pinned and published and published != pinned:
        raise ValueError(f"the index lists sha256 {published}, pinned is {pinned}")
    path = work / filename
    with urllib.request.urlopen(entry["url"], timeout=300) as response, path.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    if published and sha256_file(path) != published:
        raise ValueError("download does not match the index's sha256")
    return path


def _download_sdist_pip(version: str, work: Path) -> Path:
    """Fallback: let pip resolve the pinned sdist (honours pip.conf mirrors)."""
    command = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}"]
    command += ["--no-deps", "--no-binary", ":all:", "--quiet", "--dest", str(work)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"pip exited with {result.returncode}")
    return next(work.glob(f"llama_cpp_python-{version}.tar.gz"))


def _extract_converter(sdist: Path, version: str, dest: Path) -> None:
    """Copy only the converter's parts out of ``vendor/llama.cpp/`` (and its licence)."""
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    wanted = (*CONVERTER_PARTS, "LICENSE")
    count = 0
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive:
            if not member.name.startswith(prefix) or not member.isfile():
                continue
            relative = member.name[len(prefix) :]
            if not any(relative == w or relative.startswith(w) for w in wanted if w):
                continue
            if ".." in Path(relative).parts:
                continue
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # a regular file: isfile() above
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            count += 1
    if not (dest / "convert_hf_to_gguf.py").is_file() or not (dest / "gguf-py").is_dir():
        raise StageError("convert", f"{sdist.name} has no vendor/llama.cpp converter")
    print(f"converter: kept {count} files in {dest.name}", flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_to_f16(converter: Path, model_dir: Path, outfile: Path) -> None:
    """Run the vendored ``convert_hf_to_gguf.py`` with the vendored ``gguf-py``."""
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(converter / "gguf-py")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    command = [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(model_dir)]
    command += ["--outfile", str(outfile), "--outtype", "f16"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    # Keep what a terminal would show: the last frame of each progress-bar line.
    log = [line.split("\r")[-1] for line in (result.stdout + result.stderr).split("\n")]
    log = [line for line in log if line.strip()]
    if result.returncode != 0 or not outfile.is_file():
        tail = "\n".join(log[-40:])
        print(tail, file=sys.stderr)
        last = log[-1] if log else f"exit code {result.returncode}"
        raise StageError("convert", f"convert_hf_to_gguf.py failed: {last}")
    done = [line for line in log if "successfully exported" in line] or log[-1:]
    print(f"  {done[-1].strip()}", flush=True)
