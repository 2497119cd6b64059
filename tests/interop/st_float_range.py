"""Tell schemathesis what OpenAPI `format: float` means: an IEEE 754 binary32, |x| <= 3.4028234663852886e38."""
import schemathesis

F32_MAX = 3.4028234663852886e38


def _bound(node):
    if isinstance(node, dict):
        if node.get("format") == "float":
            node.setdefault("minimum", -F32_MAX)
            node.setdefault("maximum", F32_MAX)
        for value in node.values():
            _bound(value)
    elif isinstance(node, list):
        for value in node:
            _bound(value)


@schemathesis.hook
def before_load_schema(ctx, raw_schema):
    _bound(raw_schema)


def _in_range(node):
    if isinstance(node, float):
        return abs(node) <= F32_MAX
    if isinstance(node, dict):
        return all(_in_range(v) for v in node.values())
    if isinstance(node, list):
        return all(_in_range(v) for v in node)
    return True


@schemathesis.hook
def filter_body(ctx, body):
    # Numbers past the binary32 range are valid only under `format: double` or no format;
    # the Nchf request has a float field in several places and schemathesis does not bound it.
    return _in_range(body)
