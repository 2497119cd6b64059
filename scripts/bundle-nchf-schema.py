#!/usr/bin/env python3
"""Bundles the JSON Schema of a ChargingDataRequest (3GPP TS 32.291 Release 17) from the
OpenAPI files into one self-contained JSON document the Nchf server validates requests
against (oss-adapters/src/nchf/charging_data_request.schema.json).

Every schema reachable from ChargingDataRequest, across the referenced files, is copied
under "$defs" with its $refs rewritten; OpenAPI's `nullable: true` becomes a JSON Schema
type union with null. Regenerate after changing the spec:
    python3 scripts/bundle-nchf-schema.py ../shared/specs/nchf-rel17 > oss-adapters/src/nchf/charging_data_request.schema.json
"""
import json
import os
import sys

import yaml

ROOT = "TS32291_Nchf_ConvergedCharging.yaml"


def main():
    spec_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/specs/nchf-rel17"
    documents = {}

    def load(name):
        if name not in documents:
            with open(os.path.join(spec_dir, name)) as handle:
                documents[name] = yaml.safe_load(handle)
        return documents[name]

    defs = {}
    queue = [(ROOT, "ChargingDataRequest")]

    def key(file, name):
        return file.replace(".yaml", "") + "_" + name

    def rewrite(node, file):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "$ref":
                    target_file, _, pointer = v.partition("#")
                    target_file = target_file or file
                    name = pointer.rsplit("/", 1)[-1]
                    if not pointer.startswith("/components/schemas/"):
                        raise SystemExit(f"unsupported $ref {v} in {file}")
                    queue.append((target_file, name))
                    out["$ref"] = "#/$defs/" + key(target_file, name)
                elif k == "nullable":
                    continue
                else:
                    out[k] = rewrite(v, file)
            if node.get("nullable") is True:
                return {"anyOf": [out, {"type": "null"}]}
            return out
        if isinstance(node, list):
            return [rewrite(v, file) for v in node]
        return node

    while queue:
        file, name = queue.pop()
        if key(file, name) in defs:
            continue
        defs[key(file, name)] = None
        schema = load(file)["components"]["schemas"][name]
        defs[key(file, name)] = rewrite(schema, file)
    bundle = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "ChargingDataRequest (3GPP TS 32.291 V17, bundled)",
        "$ref": "#/$defs/" + key(ROOT, "ChargingDataRequest"),
        "$defs": dict(sorted(defs.items())),
    }
    json.dump(bundle, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
