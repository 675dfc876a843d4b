"""Where a command may write: user data is never overwritten by accident.

Every command, and every library function a command calls, checks its outputs here before any
expensive work:

* an output never equals, contains or lies inside an input it reads (:func:`refuse_overlap`);
* an existing file is replaced only with ``force`` (:func:`check_file_output`);
* an existing directory is replaced, or written into, only with ``force`` and only when every
  file in it is one mesc wrote, as its own kind of output says (:func:`check_dir_output`): a
  folder holding anything else (a valid package with the user's notes beside it included) is
  refused even with ``force``, naming those files, and so is the current directory or one above it;
* the place an output goes must be a writable directory, so a read-only or immutable location
  is a :class:`MescError` up front rather than a ``PermissionError`` after minutes of work.

Writing itself goes through :mod:`mesc.package.staging`, so an output appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from mesc.errors import MescError

# results.json of a `mesc run` output carries this, so a later --force knows the folder is ours
RUN_MARKER = {"written_by": "mesc run"}
# mesc-model.json of a Triton model folder `mesc serve --model-repository` wrote, and what else it holds
TRITON_MODEL_MARKER = ("mesc-model.json", {"written_by": "mesc serve --model-repository"})
TRITON_MODEL_FILES = {"mesc-model.json", "config.pbtxt", "README.md", "1"}
# meta.json's "generator" in a folder mesc synth-data wrote (mesc.datasets.synthetic writes it;
# the value names the generator's first home and stays, so older folders are still recognised)
SYNTH_DATA_GENERATOR = "mesc.data.render_scene"

# how many foreign names a refusal lists before "..."
_SHOWN = 5


def resolved(path) -> Path:
    """``path`` as the file system sees it: absolute (relative to the cwd), ``.``/``..`` and
    symlinks resolved, also where the end of it does not exist yet."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _named(paths):
    """``(label, path)`` pairs without the paths that are not given (``None``, or an object
    such as an already loaded data set)."""
    return [(label, p) for label, p in paths if isinstance(p, (str, os.PathLike)) and str(p) != ""]


def refuse_overlap(outputs, inputs, error=MescError) -> None:
    """Refuse when an output equals, contains or lies inside an input.

    ``outputs`` and ``inputs`` are ``(label, path)`` pairs, the label naming the option or
    argument (``"-o"``, ``"--weights"``, ``"PACKAGE"``); a ``None`` path is skipped.
    """
    for out_label, out in _named(outputs):
        ro = resolved(out)
        for in_label, inp in _named(inputs):
            ri = resolved(inp)
            if ro == ri:
                how = "is"
            elif _inside(ri, ro):
                how = "contains"
            elif _inside(ro, ri):
                how = "lies inside"
            else:
                continue
            raise error(f"the output {out_label} {out} {how} the input {in_label} {inp}; "
                            f"write the output somewhere else (mesc never writes over what it reads)")


def refuse_inside_generated(root, folders, inputs) -> None:
    """Refuse an input inside one of the ``folders`` that a command (re)generates in the
    package ``root`` (prepare's ``onnx_<precision>/``, build's ``engines/``)."""
    refuse_overlap([(f"{rel}/ of the package", Path(root) / rel) for rel in folders], inputs)


def _nearest_existing(path: Path) -> Path:
    where = path
    while not os.path.lexists(where) and where != where.parent:
        where = where.parent
    return where


def check_writable_place(path, option: str, error=MescError) -> None:
    """Refuse when ``path`` cannot be created: the nearest existing folder above it is not a
    directory, or nothing can be written there (read-only, immutable, no permission).
    ``error``: the :class:`MescError` subclass to raise."""
    path = Path(os.path.abspath(path))
    where = _nearest_existing(path.parent)
    if not where.is_dir():
        raise error(f"{option} {path}: {where} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as err:
        raise error(f"{option} {path}: cannot write in {where} ({err.strerror or err})") from None


def check_file_output(path, option: str, force: bool = False, inputs=(), error=MescError) -> Path:
    """Check a file output before any work: not a directory, not an existing file unless
    ``force``, not overlapping ``inputs`` (``(label, path)`` pairs), in a writable place."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{option} {path} is a directory; give a file name")
    if os.path.lexists(path) and not force:
        raise error(f"{option} {path} already exists; pass --force to overwrite it")
    refuse_overlap([(option, path)], inputs, error)
    check_writable_place(path, option, error)
    return path


def check_file_outputs(outputs, force: bool = False, inputs=(), continued=None, error=MescError) -> None:
    """Every file output of one command (``(label, path)`` pairs; ``None`` paths skipped),
    checked before any work: each as :func:`check_file_output`, and no two the same file (a
    log and its curves, a checkpoint and the output).

    ``continued``: ``{output label: input label or None}`` for outputs that continue a file of
    the command's own from an earlier run, as the caller has established: such an output may
    replace its file without ``force``, and may be the input named (a resumed training run's
    checkpoint is the ``--resume`` file it read once at the start)."""
    continued = continued or {}
    named = _named(outputs)
    for label, path in named:
        if label in continued:
            own = continued[label]
            check_file_output(path, label, True, inputs=[i for i in inputs if i[0] != own], error=error)
        else:
            check_file_output(path, label, force, inputs=inputs, error=error)
    for i, (label, path) in enumerate(named):
        for other, other_path in named[:i]:
            if resolved(path) == resolved(other_path):
                raise error(f"{label} {path} is also the {other} {other_path}; give each output its own file")


# ---------------------------------------------------------------------------------------------
# directories mesc recognises as its own

def _listing(names) -> str:
    names = sorted(names)
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return f"{len(names)} file(s) mesc did not write: {', '.join(names[:_SHOWN])}{more}"


def _owned(rel: str, ours: set) -> bool:
    """``rel`` (a POSIX path inside the folder) is one of ``ours`` or lies in a folder of ours."""
    parts = rel.split("/")
    return any("/".join(parts[:k]) in ours for k in range(1, len(parts) + 1))


def foreign_files(path: Path, ours: set) -> list:
    """Every file (and symlink, and empty folder) under ``path`` that is not one of ``ours``
    (POSIX paths relative to ``path``; a folder in ``ours`` owns everything inside it)."""
    found = []
    for top, dirs, files in os.walk(path):
        rel_top = Path(top).relative_to(path).as_posix()
        prefix = "" if rel_top == "." else rel_top + "/"
        for name in [d for d in dirs if os.path.islink(os.path.join(top, d))] + files:
            if not _owned(prefix + name, ours):
                found.append(prefix + name)
        if not dirs and not files and prefix and not _owned(prefix[:-1], ours):
            found.append(prefix[:-1] + "/")
    return found


def _foreign_problem(path: Path, ours: set) -> str | None:
    foreign = foreign_files(path, ours)
    return f"it holds {_listing(foreign)}" if foreign else None


def package_files(manifest: dict) -> set:
    """What mesc wrote in a package: the manifest and every path it names (segments, prepared
    graphs, engine builds with their folders)."""
    from mesc.package.manifest import MANIFEST, manifest_paths

    return {MANIFEST, *(Path(rel).as_posix() for _, rel in manifest_paths(manifest))}


def _package_problem(path: Path) -> str | None:
    from mesc.package import Package

    try:
        pkg = Package.load(path, verify_checksums=False)
    except MescError as err:
        return f"it is not a mesc package ({err}); it holds {_listing(p.name for p in path.iterdir())}"
    # `mesc build` keeps its timing caches beside the builds (engines/<target>.trt<version>.sm<cc>.timing.cache)
    caches = {f"engines/{p.name}" for p in (path / "engines").glob("*.timing.cache")}
    return _foreign_problem(path, package_files(pkg.manifest) | caches)


def _synth_data_problem(path: Path) -> str | None:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("generator") != SYNTH_DATA_GENERATOR:
        return (f"it is not a folder written by 'mesc synth-data' (no meta.json of mesc's generator); it holds "
                f"{_listing(p.name for p in path.iterdir())}")
    images = meta.get("images")
    names = [r.get("file") for r in images if isinstance(r, dict)] if isinstance(images, list) else []
    ours = {"meta.json", "classes.txt"}
    ours |= {f"{folder}/{n}" for n in names if isinstance(n, str) for folder in ("images", "masks")}
    return _foreign_problem(path, ours)


def run_output_files(path: Path) -> set | None:
    """The files a previous ``mesc run`` wrote in ``path`` (from its marked results.json), or
    ``None`` when results.json is missing or not mesc's."""
    try:
        res = json.loads((path / "results.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(res, dict) or any(res.get(k) != v for k, v in RUN_MARKER.items()):
        return None
    images = res.get("images")
    listed = [r.get(k) for r in images if isinstance(r, dict) for k in ("output", "overlay")] \
        if isinstance(images, list) else []
    # a video run's files (the overlay video) are listed under "outputs"
    outputs = res.get("outputs")
    listed += list(outputs) if isinstance(outputs, list) else []
    return {"results.json", "results.csv", *(n for n in listed if isinstance(n, str) and "/" not in n)}


def _run_output_problem(path: Path) -> str | None:
    present = {p.name for p in path.iterdir()}
    if not present:
        return None
    ours = run_output_files(path) or set()
    foreign = {n for n in present if n not in ours or not (path / n).is_file() or (path / n).is_symlink()}
    if foreign:
        return f"it holds {_listing(foreign)}"
    return None


def _triton_model_problem(path: Path) -> str | None:
    name, marker = TRITON_MODEL_MARKER
    try:
        meta = json.loads((path / name).read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in marker.items()):
        return f"it is not a Triton model folder mesc wrote (no {name} of '{marker['written_by']}')"
    foreign = {p.name for p in path.iterdir()} - TRITON_MODEL_FILES
    if foreign:
        return f"it holds {_listing(foreign)}"
    return None


KINDS = {
    "package": ("a mesc package", _package_problem),
    "synth-data": ("a synth-data folder", _synth_data_problem),
    "run": ("a previous 'mesc run' output or an empty folder", _run_output_problem),
    "triton-model": ("a Triton model folder mesc wrote", _triton_model_problem),
}


def check_dir_output(path, kind: str, force: bool = False, option: str = "-o", inputs=()) -> Path:
    """Check a directory output before any work.

    A missing ``path`` is fine if it can be created. An existing one needs ``force`` (for
    ``"run"`` an empty folder does not), and is then accepted only if it is empty or ``kind`` of output:
    ``"package"``, ``"synth-data"``, ``"run"`` or ``"triton-model"`` (see :data:`KINDS`). The current directory, or
    one above it, is never an output: replacing it would pull the ground from under the shell.
    """
    what, problem = KINDS[kind]
    path = Path(path)
    refuse_overlap([(option, path)], inputs)
    if _inside(resolved("."), resolved(path)):
        raise MescError(f"{option} {path} is the current directory or a folder above it; "
                        f"give a new folder for the output")
    if os.path.lexists(path):
        if not path.is_dir() or path.is_symlink():
            raise MescError(f"{option} {path} exists and is not a directory")
        empty = not any(path.iterdir())
        if not force and not (kind == "run" and empty):
            verb = "is not empty; pass --force to write into it" if kind == "run" else \
                "already exists; pass --force to overwrite it"
            raise MescError(f"output directory {path} {verb}")
        # an empty folder holds nothing to lose, whatever kind of output replaces it
        why = None if empty else problem(path)
        if why:
            raise MescError(f"{option} {path}: --force replaces only {what}, and {why}; "
                            f"choose another output folder")
    check_writable_place(path, option)
    return path


__all__ = ["RUN_MARKER", "TRITON_MODEL_FILES", "TRITON_MODEL_MARKER", "KINDS", "check_dir_output", "check_file_output",
           "check_file_outputs", "check_writable_place", "foreign_files", "package_files", "refuse_inside_generated",
           "refuse_overlap", "resolved", "run_output_files"]
