"""Finds the packages under every root that setup.cfg's package_dir maps (mesc.exporters lives in
exporters/, ...): a subpackage listed by hand and forgotten still imports from an editable install
but is missing from a wheel. Everything else is in setup.cfg."""

import configparser
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def package_dir() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(HERE / "setup.cfg")
    pairs = (line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines())
    return {name.strip(): folder.strip() for name, folder in pairs}


def packages(roots: dict[str, str]) -> list[str]:
    return [name + sub for name, folder in roots.items()
            for sub in ["", *("." + p for p in find_packages(str(HERE / folder)))]]


setup(packages=packages(package_dir()))
