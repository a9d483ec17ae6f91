"""Detection figures on a folder of labelled recordings (default: the shared dev set).

    python benchmarks/detection.py [DIR]

Same scoring as `clonusd evaluate`; prints the summary and each miss and false alarm.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from clonusd.daemon.commands.evaluate import evaluate

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "recordings" / "dev"


def main() -> None:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    result = evaluate(directory)
    for line in result.problems:
        print(line)
    print(json.dumps(result.summary(), indent=2))


if __name__ == "__main__":
    main()
