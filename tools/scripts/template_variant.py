#!/usr/bin/env python3
"""Prints template.yaml with some parameters' defaults changed, so `make test` can lint the
template as it deploys with each value of a parameter (e.g. every AmoEgress mode).

usage: template_variant.py TEMPLATE NAME=VALUE [NAME=VALUE ...] > variant.yaml
"""

import re
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = open(argv[0], encoding="utf-8").read()
    for pair in argv[1:]:
        name, _, value = pair.partition("=")
        # The parameter's block runs from "  Name:" to the next two-space key.
        block = re.compile(rf"(^  {re.escape(name)}:\n(?:    .*\n|\s*\n)*?    Default: )(.*)$", re.M)
        text, n = block.subn(lambda m: m.group(1) + repr(value).replace('"', "'"), text, count=1)
        if n != 1:
            print(f"template_variant: no parameter {name} with a Default", file=sys.stderr)
            return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
