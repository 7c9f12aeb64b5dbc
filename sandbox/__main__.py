"""python -m sandbox up [--fresh] | sandbox | down"""

import json
import sys

from .lifecycle import down, sandbox, up


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    if cmd == "up":
        print(json.dumps(up(fresh="--fresh" in argv), indent=2))
    elif cmd == "sandbox":
        return sandbox()
    elif cmd == "down":
        down()
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
