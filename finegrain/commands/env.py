"""``finegrain env``: the Python, library versions, CUDA devices and threads this machine offers.

The same facts go into every checkpoint sidecar (``environment``); paste this output into a bug
report. ``--json`` prints them as one JSON object, the form the sidecar stores.
"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("env", help="print Python, torch, torchvision, timm, lightning versions, CUDA devices, threads")
    p.add_argument("--json", dest="as_json", action="store_true", help="print one JSON object instead of aligned lines")
    p.set_defaults(func=run)


def format_facts(facts: dict) -> str:
    """One ``key: value`` line a fact, lists joined by commas, missing packages as 'not installed'."""
    from finegrain.environment import PACKAGES

    width = max(len(key) for key in facts)
    lines = []
    for key, value in facts.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        elif value is None:
            value = "not installed" if key in PACKAGES else "-"
        lines.append(f"{key:{width}s}  {value}")
    return "\n".join(lines)


def run(args) -> int:
    from finegrain.environment import facts

    found = facts(probe_devices=True)
    print(json.dumps(found, indent=2) if args.as_json else format_facts(found))
    return 0
