"""python -m bench [--hosts 1|8] [--long-idle] [--skip-fresh] [--quick]  (see bench/__init__.py)"""

import argparse
import sys

from .run import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench", description="mcp-edge performance bench (sandbox)")
    p.add_argument("--hosts", type=int, choices=(1, 8), default=1,
                   help="also time converging 8 Ubuntu-like hosts in parallel (opt-in: 7 extra containers, removed after)")
    p.add_argument("--long-idle", action="store_true", help="also hold idle streams for 10 minutes")
    p.add_argument("--skip-fresh", action="store_true",
                   help="do not recreate the target bare (no fresh-apply timing)")
    p.add_argument("--no-converge", action="store_true", help="skip the converge timings (apply, re-apply, drift)")
    p.add_argument("--quick", action="store_true", help="smaller counts, for trying the bench out")
    p.add_argument("--report", metavar="RESULTS_JSON", help="only re-render the table and plot of a saved run")
    sys.exit(main(p.parse_args()))
