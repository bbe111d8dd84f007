"""The controller image installs the Python packages the tests run: deploy/requirements-image.txt pins
every one, at the version requirements-dev.txt pins."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Needed only to build the image (the controller package's build backend), never by the tests.
BUILD_ONLY = {"setuptools"}


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_the_image_pins_every_package_at_the_version_the_tests_run():
    image, dev = pins(REPO / "deploy/requirements-image.txt"), pins(REPO / "requirements-dev.txt")
    assert {"kubernetes", "urllib3", "pyyaml", "ansible-core"} <= set(image)
    assert image["kubernetes"] != "36.0.0"
    differ = {name: (version, dev.get(name)) for name, version in image.items() if name not in BUILD_ONLY
              and dev.get(name) != version}
    assert differ == {}, "deploy/requirements-image.txt and requirements-dev.txt pin these differently"
