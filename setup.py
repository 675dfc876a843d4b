"""Finds the packages under every root that setup.cfg's package_dir maps (mesc.exporters lives in
exporters/, ...): a subpackage listed by hand and forgotten still imports from an editable install
but is missing from a wheel. Everything else is in setup.cfg.

Kept parseable by old Pythons (no f-strings or annotations anywhere): Python 3.7 and older
(JetPack 4's 3.6) get one line naming the minimum, not a SyntaxError."""

import sys

if sys.version_info < (3, 8):
    sys.exit("mesc needs Python 3.8 or newer; this is Python %d.%d" % sys.version_info[:2])

import configparser  # noqa: E402
from pathlib import Path  # noqa: E402

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def package_dir():
    cfg = configparser.ConfigParser()
    cfg.read(HERE / "setup.cfg")
    pairs = (line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines())
    return {name.strip(): folder.strip() for name, folder in pairs}


def packages(roots):
    return [name + sub for name, folder in roots.items()
            for sub in ["", *("." + p for p in find_packages(str(HERE / folder)))]]


setup(packages=packages(package_dir()))
