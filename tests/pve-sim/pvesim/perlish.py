"""Small helpers that reproduce Perl semantics PVE relies on.

PVE's API server is Perl: regexes are anchored as `m/^$pattern$/`, lists are
split with PVE::Tools::split_list, numbers are compared as Perl scalars and
sizes are parsed/printed by PVE::JSONSchema::parse_size/format_size. Getting
these details right is what makes the simulator reject what PVE rejects.
"""

import functools
import re

_NUMBER_RE = re.compile(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$")
_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_SIZE_RE = re.compile(r"^(\d+(\.\d+)?)([KMGT])?$")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def perl_regex(pattern):
    """Translate the few Perl-only constructs found in apidata.json patterns."""
    return pattern.replace("(?^:", "(?:").replace("(?^i:", "(?i:")


@functools.lru_cache(maxsize=4096)
def _anchored(pattern, flags):
    return re.compile("^(?:" + perl_regex(pattern) + ")$", flags)


def full_match(pattern, value, flags=0):
    """`$value =~ m/^$pattern$/` (Python's `$` also allows one trailing newline, like Perl's)."""
    return _anchored(pattern, flags).match(value) is not None


def is_number(value):
    return isinstance(value, str) and _NUMBER_RE.match(value) is not None


def is_integer(value):
    return isinstance(value, str) and _INTEGER_RE.match(value) is not None


def num(value):
    """Numeric value of a Perl scalar that passed is_number (or a schema bound)."""
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    try:
        return int(text)
    except ValueError:
        return float(text)


def num_str(value):
    """How Perl prints a number (JSON numbers, schema bounds in messages)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")
    return str(value)


def truthy(value):
    """Perl truthiness of a scalar: undef, '' and '0' are false."""
    return value is not None and value != "" and value != "0"


def split_list(text):
    """PVE::Tools::split_list: NUL-separated, else split on [,;] and whitespace."""
    if text is None:
        return []
    if "\0" in text:
        return text.split("\0")
    text = re.sub(r"[,;]", " ", text).lstrip()
    parts = re.split(r"\s+", text) if text else []
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def parse_boolean(value):
    """PVE::JSONSchema::parse_boolean, returning '1'/'0' or None."""
    if re.match(r"^(1|on|yes|true)$", value, re.I):
        return "1"
    if re.match(r"^(0|off|no|false)$", value, re.I):
        return "0"
    return None


def parse_size(value):
    """PVE::JSONSchema::parse_size: '8G' -> bytes, None when unparsable."""
    match = _SIZE_RE.match(value)
    if not match:
        return None
    size = float(match.group(1)) if match.group(2) else int(match.group(1))
    if match.group(3):
        size *= _UNITS[match.group(3)]
    return int(size)


def format_size(size):
    """PVE::JSONSchema::format_size: bytes -> the largest exact unit."""
    size = int(size)
    kb, rest = divmod(size, 1024)
    if rest:
        return str(size)
    mb, rest = divmod(kb, 1024)
    if rest:
        return f"{kb}K"
    gb, rest = divmod(mb, 1024)
    if rest:
        return f"{mb}M"
    tb, rest = divmod(gb, 1024)
    if rest:
        return f"{gb}G"
    return f"{tb}T"


def trim(text):
    return text.strip(" \t\r\n\f\v")
