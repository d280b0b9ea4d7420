"""Check ARM request and response bodies against Azure's published REST specs.

The judge is the model classes that Microsoft generates from
Azure/azure-rest-api-specs and publishes on PyPI (pinned in
tests/specs/requirements.txt):

* azure-mgmt-containerinstance 10.1.0: Microsoft.ContainerInstance
  api-version 2023-05-01 (specification/containerinstance/resource-manager/
  Microsoft.ContainerInstance/stable/2023-05-01/containerInstance.json);
* azure-mgmt-storage 21.2.1, its v2023_05_01 models: Microsoft.Storage
  api-version 2023-05-01 (specification/storage/resource-manager/
  Microsoft.Storage/stable/2023-05-01/{storage,file}.json);

and, for what `handler doctor` reads:

* azure-mgmt-resource 23.1.1, its resources v2021_04_01 models:
  Microsoft.Resources 2021-04-01 (providers);
* azure-mgmt-authorization 4.0.0, its v2022_04_01 models:
  Microsoft.Authorization 2022-04-01 (role assignments and definitions);
* azure-mgmt-msi 7.0.0, its v2023_01_31 models: Microsoft.ManagedIdentity
  2023-01-31 (user-assigned identities);
* azure-mgmt-cosmosdb 9.7.0 (api-version 2024-11-15, the package's
  default): Microsoft.DocumentDB (SQL containers, SQL role assignments and
  definitions).

Each model class carries the spec's facts: `_attribute_map` (every wire
property, its JSON path with flattening, its type), `_validation` (required,
readOnly, patterns and bounds) and, in its docstring's `:vartype` lines and
`__init__`'s annotations, the enum each string property takes. This script walks a body against them and
reports every property the spec does not know, every wrong type, every
missing required property, every value outside its enum or bounds, and (in
a request) every read-only property sent.

stdin: a JSON array of {"label", "package": one of PACKAGES' keys,
"model": class name, "direction": "request" | "response", "body"}.
stdout: a JSON array of {"label", "errors": [..]}, in the same order.
"""

import enum
import importlib
import inspect
import json
import re
import sys

PACKAGES = {
    "containerinstance": "azure.mgmt.containerinstance.models",
    "storage": "azure.mgmt.storage.v2023_05_01.models",
    "resource": "azure.mgmt.resource.resources.v2021_04_01.models",
    "authorization": "azure.mgmt.authorization.v2022_04_01.models",
    "msi": "azure.mgmt.msi.v2023_01_31.models",
    "cosmosdb": "azure.mgmt.cosmosdb.models",
}
API_VERSIONS = {
    "containerinstance": "2023-05-01",
    "storage": "2023-05-01",
    "resource": "2021-04-01",
    "authorization": "2022-04-01",
    "msi": "2023-01-31",
    "cosmosdb": "2024-11-15",
}


def split_key(key):
    """A flattened `_attribute_map` key ("properties.osType") as its path."""
    return [p.replace("\\.", ".") for p in re.split(r"(?<!\\)\.", key)]


def enum_of(models, cls, attr):
    """The enum class the model declares for `attr`: its docstring's
    `:vartype attr: str or ~...models.EnumName` line (read-only properties
    too), else `__init__`'s annotation."""
    texts = []
    for klass in cls.__mro__:
        m = re.search(rf"^\s*:vartype {attr}: (.*)$", klass.__doc__ or "", re.M)
        if m:
            texts.append(m.group(1))
            break
    try:
        param = inspect.signature(cls.__init__).parameters.get(attr)
        if param is not None:
            texts.append(str(param.annotation))
    except (TypeError, ValueError):
        pass
    for text in texts:
        for name in re.findall(r"models\.(\w+)", text):
            candidate = getattr(models, name, None)
            if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
                return candidate
    return None


class Checker:
    def __init__(self, package, direction):
        self.models = importlib.import_module(PACKAGES[package])
        self.request = direction == "request"
        self.errors = []

    def error(self, path, message):
        self.errors.append(f"{path or '$'}: {message}")

    def model(self, name):
        cls = getattr(self.models, name, None)
        if not (isinstance(cls, type) and hasattr(cls, "_attribute_map")):
            raise SystemExit(f"arm_spec.py: no model {name} in {self.models.__name__}")
        return cls

    def check_model(self, value, name, path):
        cls = self.model(name)
        if not isinstance(value, dict):
            self.error(path, f"expected an object ({name}), found {json.dumps(value)[:60]}")
            return
        attrs = cls._attribute_map
        validation = getattr(cls, "_validation", {})
        open_ended = any(a["key"] == "" for a in attrs.values())
        # The expected key tree: nested dicts, leaves are attribute names.
        tree = {}
        for attr, spec in attrs.items():
            if spec["key"] == "":
                continue
            node = tree
            parts = split_key(spec["key"])
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = attr
        self.walk(value, tree, cls, attrs, validation, open_ended, path)
        for attr, rules in validation.items():
            if not rules.get("required"):
                continue
            cur = value
            for p in split_key(attrs[attr]["key"]):
                cur = cur.get(p) if isinstance(cur, dict) else None
            if cur is None:
                self.error(path, f"missing required property {attrs[attr]['key']} ({name})")

    def walk(self, obj, tree, cls, attrs, validation, open_ended, path):
        for key, val in obj.items():
            sub = f"{path}.{key}"
            node = tree.get(key)
            if node is None:
                if not open_ended:
                    self.error(sub, f"property unknown to the spec ({cls.__name__})")
            elif isinstance(node, dict):
                if not isinstance(val, dict):
                    self.error(sub, "expected an object")
                else:
                    self.walk(val, node, cls, attrs, validation, open_ended, sub)
            else:
                rules = validation.get(node, {})
                if rules.get("readonly") and self.request:
                    self.error(sub, f"read-only property sent in a request ({cls.__name__})")
                if val is None:
                    continue
                self.check_value(val, attrs[node]["type"], rules, enum_of(self.models, cls, node), sub)

    def check_value(self, val, typ, rules, enum_cls, path):
        if typ.startswith("[") and typ.endswith("]"):
            if not isinstance(val, list):
                self.error(path, f"expected an array ({typ})")
                return
            for k in ("min_items", "max_items"):
                if k in rules and (len(val) < rules[k] if k == "min_items" else len(val) > rules[k]):
                    self.error(path, f"{len(val)} items breaks {k}={rules[k]}")
            for i, item in enumerate(val):
                self.check_value(item, typ[1:-1], {}, enum_cls, f"{path}[{i}]")
            return
        if typ.startswith("{") and typ.endswith("}"):
            if not isinstance(val, dict):
                self.error(path, f"expected an object ({typ})")
                return
            for k, item in val.items():
                self.check_value(item, typ[1:-1], {}, None, f"{path}.{k}")
            return
        if typ in ("str", "iso-8601", "duration", "rfc-1123", "base64", "bytearray"):
            if not isinstance(val, str):
                self.error(path, f"expected a string ({typ}), found {json.dumps(val)[:60]}")
                return
            if enum_cls is not None and val not in {e.value for e in enum_cls}:
                allowed = ", ".join(e.value for e in enum_cls)
                self.error(path, f"{val!r} is not one of {enum_cls.__name__}: {allowed}")
            if "pattern" in rules and not re.search(rules["pattern"], val):
                self.error(path, f"{val!r} does not match {rules['pattern']}")
            for k in ("min_length", "max_length"):
                if k in rules and (len(val) < rules[k] if k == "min_length" else len(val) > rules[k]):
                    self.error(path, f"{val!r} breaks {k}={rules[k]}")
            if "constant" in rules and val != rules.get("value", val):
                self.error(path, f"{val!r} is not the constant")
            return
        if typ in ("int", "long", "float"):
            ok = isinstance(val, (int, float)) and not isinstance(val, bool)
            if typ != "float":
                ok = ok and float(val).is_integer()
            if not ok:
                self.error(path, f"expected a number ({typ}), found {json.dumps(val)[:60]}")
                return
            if "minimum" in rules and val < rules["minimum"]:
                self.error(path, f"{val} is below the minimum {rules['minimum']}")
            if "maximum" in rules and val > rules["maximum"]:
                self.error(path, f"{val} is above the maximum {rules['maximum']}")
            return
        if typ == "bool":
            if not isinstance(val, bool):
                self.error(path, f"expected a boolean, found {json.dumps(val)[:60]}")
            return
        if typ == "object":
            return
        self.check_model(val, typ, path)


def main():
    results = []
    for case in json.load(sys.stdin):
        checker = Checker(case["package"], case.get("direction", "request"))
        checker.check_model(case["body"], case["model"], "$")
        results.append({"label": case.get("label", ""), "errors": checker.errors})
    json.dump(results, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
