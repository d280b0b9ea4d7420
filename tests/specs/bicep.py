"""Parse Bicep files with a real parser and print what the parse says.

The parser is PyPI `pycep-parser` (pinned in tests/specs/requirements.txt),
a Lark grammar of the Bicep language. The Bicep CLI cannot run on this
project's machines; this is the parse the infra checks in
tests/it/infra_parse.rs judge from.

stdin: a JSON array of paths (relative to the working directory).
stdout: a JSON array of {"path", "parse"} or {"path", "error"}, in order.
"""

import json
import sys
from pathlib import Path

from pycep import BicepParser


def main():
    parser = BicepParser()
    results = []
    for path in json.load(sys.stdin):
        try:
            parse = parser.parse(file_path=Path(path))
            # Round-trip through JSON: the parse holds a few non-JSON scalars.
            results.append({"path": path, "parse": json.loads(json.dumps(parse, default=str))})
        except Exception as e:  # noqa: BLE001 - every parse failure is reported
            results.append({"path": path, "error": f"{type(e).__name__}: {e}"[:2000]})
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
