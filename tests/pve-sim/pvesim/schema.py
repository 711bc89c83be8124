"""The API contract: apidata.json (the data behind PVE's API viewer).

Owns path matching (`ApiSchema.resolve`) and parameter validation
(`validate`), which mirrors PVE::JSONSchema::check_prop/check_object/
parse_property_string including their error texts, so a rejection here reads
like the `errors` object of a real HTTP 400 from PVE.

Values are what a Perl API handler would see: str (query string, form body,
URI), None (a key without value), bool (JSON true/false), list/dict (JSON
arrays/objects). JSON numbers are turned into their Perl string form before
they get here.
"""

import json
import re

from . import formats
from .formats import FormatError
from .perlish import full_match, is_integer, is_number, num, num_str, parse_boolean, split_list, truthy

# Keys the viewer shows as `scsi[n]`; PVE itself registers scsi0..scsi30 etc.
# Ranges not stated in the key's description come from the upstream constants
# (qemu-server MAX_NETS=32, MAX_UNUSED_DISKS=256, hostpci 16, numa 8,
# virtiofs 10; pve-container MAX_MOUNT_POINTS/DEVICES=256; corosync links 8;
# ACME domains 5).
INDEX_RANGES = {
    "ide": 4, "sata": 6, "scsi": 31, "virtio": 16, "serial": 4, "parallel": 3,
    "net": 32, "ipconfig": 32, "unused": 256, "hostpci": 16, "numa": 8,
    "usb": 15, "virtiofs": 10, "mp": 256, "dev": 256, "link": 8, "acmedomain": 5,
}


class SchemaNode:
    """One path of the API tree: `/nodes/{node}/qemu` with its methods."""

    def __init__(self, raw):
        self.path = raw.get("path", "")
        self.info = raw.get("info", {})
        self.static = {}
        self.template = None  # (param name, SchemaNode)
        self.rest_of_path = False  # `{volume}` in storage content takes the rest
        for child_raw in raw.get("children", []) or []:
            self._add_child(SchemaNode(child_raw))

    def _add_child(self, child):
        segment = child.path.rsplit("/", 1)[-1]
        match = re.match(r"^\{(.+)\}$", segment)
        if match:
            child.rest_of_path = child.path.endswith("/content/{volume}")
            self.template = (match.group(1), child)
        else:
            self.static[segment] = child


class ApiSchema:
    def __init__(self, path):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        self.root = SchemaNode({"path": "", "children": data})
        self._expanded = {}
        self._register_inline_formats()

    def _register_inline_formats(self):
        create = self.resolve("/nodes/x/qemu")[0].info["POST"]["parameters"]["properties"]
        formats.register_hash_format("pve-qm-ide", create["ide[n]"]["format"])

    def resolve(self, rel_path):
        """(SchemaNode, uri params) for a path below /api2/json, or (None, None)."""
        segments = [s for s in rel_path.split("/") if s != ""]
        node, params = self.root, {}
        for i, segment in enumerate(segments):
            if segment in node.static:
                node = node.static[segment]
            elif node.template:
                name, child = node.template
                if child.rest_of_path:
                    params[name] = "/".join(segments[i:])
                    return child, params
                params[name] = segment
                node = child
            else:
                return None, None
        if node is self.root:
            return None, None
        return node, params

    def properties(self, info):
        """The method's parameter properties with `x[n]` expanded to x0..xN."""
        key = id(info)
        if key not in self._expanded:
            props = {}
            for name, prop in info.get("parameters", {}).get("properties", {}).items():
                match = re.match(r"^(.+)\[n\]$", name)
                if match:
                    for index in range(INDEX_RANGES[match.group(1)]):
                        props[f"{match.group(1)}{index}"] = prop
                else:
                    props[name] = prop
            self._expanded[key] = props
        return self._expanded[key]

    def validate(self, info, params):
        """PVE::JSONSchema::validate($params, $info->{parameters}); returns the errors dict."""
        errors = {}
        # Missing additionalProperties is treated as "not allowed": fail closed.
        additional = info.get("parameters", {}).get("additionalProperties", 0)
        check_object("", self.properties(info), params, additional, errors)
        return errors


# --- PVE::JSONSchema, transcribed ----------------------------------------------


def add_error(errors, path, message):
    path = path or "_root"
    # Perl joins repeated errors with a single-quoted '\n', i.e. backslash-n.
    errors[path] = errors[path] + "\\n" + message if path in errors else message


def _type_name(value):
    if isinstance(value, bool):
        return "JSON::PP::Boolean"
    return "ARRAY" if isinstance(value, list) else "HASH"


def check_type(path, type_, value, errors):
    if not type_ or type_ == "any":
        return True
    if isinstance(type_, list):
        if any(check_type(path, t, value, {}) for t in type_):
            return True
        add_error(errors, path, f"type check ('{'|'.join(type_)}') failed")
        return False
    if type_ == "array":
        ok = isinstance(value, list)
    elif type_ == "object":
        ok = isinstance(value, dict)
    elif type_ == "null":
        ok = value is None
    elif isinstance(value, (list, dict)) or (isinstance(value, bool) and type_ != "boolean"):
        add_error(errors, path, f"type check ('{type_}') failed - got {_type_name(value)}")
        return False
    elif type_ == "boolean":
        ok = isinstance(value, bool) or value in ("0", "1")
    elif type_ == "integer":
        ok = is_integer(value)
    elif type_ == "number":
        ok = is_number(value)
    else:
        return True  # 'string' and unknown types need no check
    if not ok:
        if type_ in ("array", "object"):
            add_error(errors, path, f"type check ('{type_}') failed")
        else:
            add_error(errors, path, f"type check ('{type_}') failed - got '{value}'")
    return ok


def check_prop(value, schema, path, errors):
    if not isinstance(schema, dict):
        add_error(errors, path, "Invalid schema definition.")
        return
    if "oneOf" in schema and value is not None:
        add_error(errors, path, "pve-sim: 'oneOf' schemas are not simulated")
        return
    if value is None:
        if schema.get("type") == "null":
            return
        if not schema.get("optional") and not schema.get("alias") and not schema.get("group"):
            add_error(errors, path, "property is missing and it is not optional")
        return
    if not check_type(path, schema.get("type"), value, errors):
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            if "items" in schema:
                check_prop(item, schema["items"], f"{path}[{index}]", errors)
        return
    if isinstance(value, dict):
        if schema.get("properties") or schema.get("additionalProperties"):
            check_object(path, schema.get("properties") or {}, value, schema.get("additionalProperties"), errors)
        return
    check_scalar(value if isinstance(value, str) else ("1" if value else "0"), schema, path, errors)


def check_scalar(value, schema, path, errors):
    fmt = schema.get("format")
    if fmt:
        try:
            check_format(fmt, value, path)
        except FormatError as err:
            add_error(errors, path, "invalid format - " + err.pve_text())
            return
    pattern = schema.get("pattern")
    if pattern and not full_match(pattern, value):
        add_error(errors, path, "value does not match the regex pattern")
        return
    if "maxLength" in schema and len(value) > int(schema["maxLength"]):
        add_error(errors, path, f"value may only be {schema['maxLength']} characters long")
        return
    if "minLength" in schema and len(value) < int(schema["minLength"]):
        add_error(errors, path, f"value must be at least {schema['minLength']} characters long")
        return
    if is_number(value):
        if "maximum" in schema and num(value) > num(schema["maximum"]):
            add_error(errors, path, f"value must have a maximum value of {num_str(schema['maximum'])}")
            return
        if "minimum" in schema and num(value) < num(schema["minimum"]):
            add_error(errors, path, f"value must have a minimum value of {num_str(schema['minimum'])}")
            return
    enum = schema.get("enum")
    if enum is not None and value not in [str(e) for e in enum]:
        add_error(errors, path, f"value '{value}' does not have a value in the enumeration '{', '.join(map(str, enum))}'")


def check_object(path, schema, value, additional, errors):
    if not isinstance(value, dict):
        add_error(errors, path, "an object is required")
        return
    for key, sub in schema.items():
        check_prop(value.get(key), sub, f"{path}.{key}" if path else key, errors)
    for key in value:
        newpath = f"{path}.{key}" if path else key
        sub = schema.get(key)
        if sub is not None:
            requires = sub.get("requires")
            if isinstance(requires, str) and value.get(requires) is None:
                add_error(errors, f"{path}.{requires}" if path else requires,
                          f"missing property - '{newpath}' requires this property")
            continue
        if isinstance(additional, dict):
            check_prop(value[key], additional, newpath, errors)
        elif not additional:
            add_error(errors, newpath,
                      "property is not defined in schema and the schema does not allow additional properties")


def check_format(fmt, value, path):
    """PVE::JSONSchema::check_format; unimplemented format names are rejected."""
    if isinstance(fmt, dict):
        return parse_property_string(fmt, value, path)
    if fmt == "regex":
        return None
    match = re.match(r"^(.*?)(?:-(list|opt))?$", fmt)
    name, kind = match.group(1), match.group(2) or "none"
    registered = formats.lookup(name)
    if registered is None:
        raise FormatError(f"format '{fmt}' is not implemented by pve-sim (rejected)")
    if kind != "none" and isinstance(registered, dict):
        raise FormatError(f"'-{kind}' format must have code ref, not hash")
    if kind == "list":
        for item in split_list(value):
            registered(item)
    elif kind == "opt":
        if value:
            registered(value)
    elif isinstance(registered, dict):
        return parse_property_string(registered, value, path)
    else:
        registered(value)
    return None


def parse_property_string(fmt, data, path):
    """PVE::JSONSchema::parse_property_string: 'a,b=c' -> {default_key: a, b: c}."""
    res = {}
    default_key = None
    for part in data.split(","):
        if re.match(r"^\s*$", part):
            continue
        keyed = re.match(r"^([^=]+)=(.+)$", part)
        if keyed:
            _set_keyed_value(fmt, res, keyed.group(1), keyed.group(2))
        elif "=" not in part:
            if default_key:
                raise FormatError(f"duplicate key in comma-separated list property: {default_key}")
            default_key = _set_default_value(fmt, res, part)
        else:
            raise FormatError("missing key in comma-separated list property")
    errors = {}
    check_object(path, fmt, res, 0, errors)
    if errors:
        raise FormatError("format error", errors)
    return res


def _set_keyed_value(fmt, res, key, value):
    if res.get(key) is not None:
        raise FormatError(f"duplicate key in comma-separated list property: {key}")
    schema = fmt.get(key)
    if schema and schema.get("alias"):
        key_alias = schema.get("keyAlias")
        if key_alias:
            if res.get(key_alias) is not None:
                raise FormatError(f"key alias '{key_alias}' is already defined")
            res[key_alias] = key
        key = schema["alias"]
        schema = fmt.get(key)
    if not schema:
        raise FormatError(f"invalid key in comma-separated list property: {key}")
    if schema.get("type") == "boolean":
        value = parse_boolean(value) or value
    res[key] = value


def _set_default_value(fmt, res, part):
    for key, schema in fmt.items():
        if isinstance(schema, dict) and schema.get("default_key"):
            if not truthy(res.get(key)):
                res[key] = part
                return key
            raise FormatError(f"duplicate key in comma-separated list property: {key}")
    raise FormatError("value without key, but schema does not define a default key")


def print_property_string(data, fmt):
    """PVE::JSONSchema::print_property_string: default key first, then sorted keys."""
    default_key = next((k for k, s in fmt.items() if isinstance(s, dict) and s.get("default_key")), None)
    parts = []
    if default_key and data.get(default_key) is not None:
        parts.append(str(data[default_key]))
    for key in sorted(data):
        if key == default_key or data[key] is None:
            continue
        parts.append(f"{key}={data[key]}")
    return ",".join(parts)
