"""Print pip constraints pinning mesc's requirements to the oldest versions setup.cfg declares.

    python .ci/floors.py [EXTRA ...] > floors.txt

Every ``name>=X`` of install_requires (and of the extras named) becomes ``name==X``, its
environment marker kept, so an environment built with ``pip install -c floors.txt`` runs mesc on
the versions it promises to support, not on whatever is newest. Requirements without a floor are
left out.
"""

import configparser
import re
import sys
from pathlib import Path

CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
# "name[extras]>=1.2, <3; marker": the floor and the marker are what matter here
FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*[^;]*?>=\s*([^,;\s]+)[^;]*(;.*)?$")


def requirements(extras):
    cfg = configparser.ConfigParser()
    cfg.read(CFG)
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in extras:
        lines += cfg["options.extras_require"][extra].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def floors(extras):
    pins = {}
    for req in requirements(extras):
        m = FLOOR.match(req)
        if m:
            name, version, marker = m.groups()
            pins[name.lower()] = f"{name}=={version}" + (f" {marker}" if marker else "")
    return list(pins.values())


if __name__ == "__main__":
    print("\n".join(floors(sys.argv[1:])))
