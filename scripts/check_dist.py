"""`make dist`: check what `python -m build` made before anyone publishes it.

The wheel must carry the license and the ``py.typed`` markers (without them an application
type-checked against the installed package sees Any everywhere), and the sdist the license.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL_NEEDS = ("encspaces/py.typed", "encspaces_relay/py.typed", "encspaces_witness/py.typed",
               "encspaces_clients/cli/main.py", "encspaces_clients/editor/app.py")


def check(dist: Path) -> list[str]:
    problems: list[str] = []
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"expected one wheel and one sdist in {dist}, found {[p.name for p in dist.iterdir()]}"]
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
    for needed in WHEEL_NEEDS:
        if needed not in names:
            problems.append(f"{wheels[0].name} lacks {needed}")
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
        problems.append(f"{wheels[0].name} lacks the LICENSE (in .dist-info/licenses/)")
    with tarfile.open(sdists[0]) as sdist:
        if not any(name.endswith("/LICENSE") and name.count("/") == 1 for name in sdist.getnames()):
            problems.append(f"{sdists[0].name} lacks the LICENSE")
    return problems


def main() -> int:
    dist = Path(sys.argv[1] if len(sys.argv) > 1 else "dist")
    problems = check(dist)
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dist: {', '.join(sorted(p.name for p in dist.iterdir()))} carry the LICENSE and py.typed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
