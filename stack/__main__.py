"""python -m stack demo | up"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "up"):
        print("usage: python -m stack demo|up [options]  (python -m stack demo --help)", file=sys.stderr)
        return 2
    if argv[0] == "demo":
        from stack.demo import main as demo

        code: int = demo(argv[1:])
        return code
    from stack.up import main as up

    up_code: int = up(argv[1:])
    return up_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
