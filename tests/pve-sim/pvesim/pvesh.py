"""The pvesh command line, run inside the simulator for the `pvesh` stand-in.

The `tests/pve-sim/pvesh` script sends its argv over DIR/pvesh.sock; this
module turns it into what real pvesh prints and its exit code. Transcribed
from (behaviour, not code):

* pve-manager `PVE/CLI/pvesh.pm` (at 14a22df3): the leading `--noproxy` /
  `--nooutput` compatibility loop, `extract_path_info` (`No 'get' handler
  defined for '/x'`, exit 1), the command schema = the target method's
  parameters minus the URI parameters + `api_path`, `noproxy` and the
  standard output options, `call_api_method` (`no 'get' handler for '/x'`,
  `proxy loop detected - aborting`, output via `print_api_result` with the
  method's `returns` schema), `ls` (child links + capabilities), `usage`.
* pve-common (at f665029) `PVE/JSONSchema.pm` `get_options` (Getopt::Long
  with prefix `--`/`-`, booleans take an optional value, `-list` formats and
  arrays may repeat and are joined with `,`, other repeats: last one wins,
  `unable to parse option`, `not enough arguments`, `too many arguments`),
  `PVE/RESTHandler.pm` `cli_handler` (a 400 gets the short usage appended),
  `handle` (validation), `PVE/Exception.pm` `stringify` (`CODE msg`, then
  `key: message` lines, then the usage), `PVE/CLIHandler.pm` (`$abort`
  exits -1 = 255; `run_cli_handler` exits 0), `PVE/CLIFormatter.pm`
  `print_api_result` / `print_text_table` / `data_to_text`.

A Perl `die` that reaches the top of `bin/pvesh` exits with 255 (Perl uses
errno if it is set; the simulator always answers 255).
"""

import json
import re

from .access import pvesh_root
from .perlish import parse_boolean
from .schema import check_object
from .state import ApiError

METHOD_MAP = {"create": "POST", "set": "PUT", "get": "GET", "delete": "DELETE"}
COMMANDS = ("create", "delete", "get", "help", "ls", "set", "usage")
STANDARD_OUTPUT = {
    "output-format": {"type": "string", "enum": ["text", "json", "json-pretty", "yaml"], "optional": 1,
                      "default": "text"},
    "noheader": {"type": "boolean", "optional": 1, "default": 0},
    "noborder": {"type": "boolean", "optional": 1, "default": 0},
    "quiet": {"type": "boolean", "optional": 1},
    "human-readable": {"type": "boolean", "optional": 1, "default": 1},
}
OUR_PROPERTIES = {
    "api_path": {"type": "string", "description": "API path."},
    "noproxy": {"type": "boolean", "optional": 1},
}
USAGE_PROPERTIES = {
    "api_path": {"type": "string"},
    "verbose": {"type": "boolean", "optional": 1},
    "returns": {"type": "boolean", "optional": 1},
    "command": {"type": "string", "enum": sorted(METHOD_MAP), "optional": 1},
}


class CliExit(Exception):
    """Leave the command with this exit code (what was printed stays printed)."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


class PerlDie(Exception):
    """A `die` reaching the top level: stringified text on stderr, exit 255."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text


def param_exc(message, errors=None):
    return ApiError(400, message, errors)


class Pvesh:
    """One pvesh invocation: run(argv) -> (stdout, stderr, exit code)."""

    def __init__(self, app, term=None):
        self.app = app
        self.term = term or {}
        self.out = []
        self.err = []
        self.identity = pvesh_root()
        self.called = False
        self.argv = []

    def run(self, argv):
        self.argv = list(argv)
        try:
            self._main(list(argv))
            code = 0
        except CliExit as done:
            code = done.code
        except PerlDie as died:
            self.err.append(died.text)
            code = 255
        return "".join(self.out), "".join(self.err), code

    # --- CLIHandler ------------------------------------------------------------

    def _abort(self, reason):
        """CLIHandler $abort: print_usage_short(\\*STDERR, $reason), exit(-1)."""
        lines = [f"ERROR: {reason}", "USAGE: pvesh <COMMAND> [ARGS] [OPTIONS]"]
        for cmd in ("create", "delete", "get", "ls", "set", "usage"):
            suffix = " [OPTIONS]" if cmd == "usage" else " [OPTIONS] [FORMAT_OPTIONS]"
            lines.append(f"       pvesh {cmd} <api_path>{suffix}")
        lines.append("       pvesh help [<extra-args>] [OPTIONS]")
        self.err.append("\n".join(lines) + "\n")
        raise CliExit(255)

    def _main(self, args):
        self.disable_proxy = False
        self.nooutput = False
        while args and args[0] in ("--noproxy", "--nooutput"):  # pvesh.pm "compatibility code"
            if args.pop(0) == "--noproxy":
                self.disable_proxy = True
            else:
                self.nooutput = True
        if not args:
            self._abort("no command specified")
        cmd = self._expand_command(args[0])
        if cmd is None:
            self._abort(f"unknown command 'pvesh {args[0]}'")
        path_info = self._extract_path_info(args)
        if cmd == "help":
            self.out.append("USAGE: pvesh <COMMAND> [ARGS] [OPTIONS]\n")
            return
        if cmd == "usage":
            props, additional, std = dict(USAGE_PROPERTIES), 0, False
        else:
            props, additional = ({}, 0) if path_info is None else path_info
            props = dict(props)
            props.update(OUR_PROPERTIES)
            for key, prop in STANDARD_OUTPUT.items():
                props.setdefault(key, prop)
            std = True
        prefix = f"pvesh {cmd}"
        usage = f"{prefix} <api_path>{' [OPTIONS]'}{' [FORMAT_OPTIONS]' if std else ''}\n"
        try:
            params = self._get_options(props, args[1:])
            errors = {}
            check_object("", props, params, additional, errors)
            if errors:
                raise param_exc("Parameter verification failed.", errors)
            getattr(self, "_cmd_" + cmd)(cmd, params)
        except ApiError as err:
            if not self.called:
                method = METHOD_MAP.get(cmd, "GET" if cmd == "ls" else cmd.upper())
                self.app.pvesh_rejected(method, args[1] if len(args) > 1 else "", self.argv, err)
            self._die_api_error(err, usage)

    @staticmethod
    def _expand_command(name):
        """CLIHandler $expand_command_name: an exact name or a unique prefix."""
        if name in COMMANDS:
            return name
        matches = [c for c in COMMANDS if c.startswith(name)]
        return matches[0] if len(matches) == 1 else None

    def _extract_path_info(self, args):
        """pvesh.pm extract_path_info: ARGV[0] must be get/set/create/delete *literally*
        and ARGV[1] the path; returns (properties minus URI params, additionalProperties)."""
        method = METHOD_MAP.get(args[0])
        if not method or len(args) < 2 or not args[1] or args[1] == "0":
            return None
        node, uri_params = self.app.schema.resolve(args[1])
        info = node.info.get(method) if node else None
        if info is None:
            self.err.append(f"No '{args[0]}' handler defined for '{args[1]}'\n")
            self.app.pvesh_rejected(method, args[1], self.argv,
                                    ApiError(501, f"No '{args[0]}' handler defined for '{args[1]}'"))
            raise CliExit(1)
        props = {k: v for k, v in self.app.schema.properties(info).items() if k not in uri_params}
        return props, info.get("parameters", {}).get("additionalProperties", 0)

    def _die_api_error(self, err, usage):
        """PVE::Exception stringify (code + message, `key: msg` lines, usage for 400s);
        a plain `die` (the simulator's 500s) is printed as it is."""
        message = err.message if err.message.endswith("\n") else err.message + "\n"
        if err.status == 500:
            raise PerlDie(message)
        text = f"{err.status} {message}"
        for key, value in sorted((err.errors or {}).items()):
            text += f"{key}: {value}" + ("" if str(value).endswith("\n") else "\n")
        if err.status == 400:
            text += usage
        raise PerlDie(text)

    # --- PVE::JSONSchema::get_options -------------------------------------------

    def _get_options(self, props, args):
        getopt = {}
        for name, prop in props.items():
            optional = prop.get("type") == "boolean"
            listy = bool(re.search(r"-list", str(prop.get("format", "")))) or prop.get("type") == "array"
            getopt[name] = (optional, listy and not optional)
        opts, positional = {}, []
        failed = False
        index = 0
        while index < len(args):
            arg = args[index]
            index += 1
            if arg == "--":
                positional.extend(args[index:])
                break
            match = re.match(r"^(--|-)([^=]+)(?:=(.*))?$", arg, re.S)
            if not match or arg == "-":
                positional.append(arg)  # Getopt::Long's default `permute`
                continue
            name = self._match_option(getopt, match.group(2))
            if name is None:
                self.err.append(f"Unknown option: {match.group(2).lower()}\n")
                failed = True
                continue
            optional, listy = getopt[name]
            value = match.group(3)
            if value is None:
                if optional:
                    nxt = args[index] if index < len(args) else None
                    if nxt is not None and (nxt == "-" or not nxt.startswith("-")):
                        value = nxt
                        index += 1
                    else:
                        value = ""
                elif index < len(args):
                    value = args[index]
                    index += 1
                else:
                    self.err.append(f"Option {name} requires an argument\n")
                    failed = True
                    continue
            if listy:
                opts.setdefault(name, []).append(value)
            else:
                opts[name] = value  # a repeated scalar option: the last one wins
        if failed:
            raise param_exc("unable to parse option")
        if positional:
            opts["api_path"] = positional.pop(0)
            if positional:
                raise param_exc("too many arguments")
        elif not props.get("api_path", {}).get("optional"):
            raise param_exc("not enough arguments")
        for name, value in list(opts.items()):
            prop = props.get(name, {})
            if prop.get("type") == "boolean":
                if value == "":
                    opts[name] = "1"
                else:
                    parsed = parse_boolean(value)
                    if parsed is None:
                        raise param_exc("unable to parse boolean option")
                    opts[name] = parsed
            elif re.search(r"-list", str(prop.get("format", ""))) and isinstance(value, list):
                opts[name] = ",".join(value)  # --vmid 100 --vmid 101 == --vmid 100,101
        return opts

    @staticmethod
    def _match_option(getopt, given):
        """Getopt::Long defaults: ignore_case and auto_abbrev (a unique prefix)."""
        lowered = given.lower()
        for name in getopt:
            if name.lower() == lowered:
                return name
        matches = [name for name in getopt if name.lower().startswith(lowered)]
        return matches[0] if len(matches) == 1 else None

    # --- commands ------------------------------------------------------------------

    def _split_std(self, params):
        return {k: params.pop(k) for k in list(params) if k in STANDARD_OUTPUT}

    def _cmd_get(self, cmd, params):
        self._call_api_method(cmd, params)

    _cmd_set = _cmd_create = _cmd_delete = _cmd_get

    def _call_api_method(self, cmd, params):
        method = METHOD_MAP[cmd]
        path = params.pop("api_path")
        stdopts = self._split_std(params)
        if stdopts.get("quiet") == "1":
            self.nooutput = True
        node, uri_params = self.app.schema.resolve(path)
        info = node.info.get(method) if node else None
        if info is None:
            raise PerlDie(f"no '{cmd}' handler for '{path}'\n")
        self._check_proxyto(info, dict(params, **uri_params))
        rel_path = "/" + "/".join(s for s in path.split("/") if s)
        self.called = True
        warnings = []
        try:
            data = self.app.pvesh_call(method, rel_path, params, self.identity, warnings)
        finally:  # in-process, a handler's `warn` goes to pvesh's stderr
            self.err.extend(w + "\n" for w in warnings)
        if self.nooutput:
            return
        self._print_api_result(data, info.get("returns"), None, stdopts)

    def _check_proxyto(self, info, params):
        proxyto = info.get("proxyto")
        node = params.get(proxyto) if proxyto else None
        if node and node not in ("localhost", self.app.node.local) and self.disable_proxy:
            raise PerlDie("proxy loop detected - aborting\n")
        # otherwise the simulator's node check answers like an unknown host

    def _cmd_ls(self, cmd, params):
        path = params.pop("api_path")
        stdopts = self._split_std(params)
        node, uri_params = self.app.schema.resolve(path)
        info = node.info.get("GET") if node else None
        if info is None:
            raise PerlDie(f"no such resource '{path}'\n")
        links = (info.get("returns") or {}).get("links") or []
        link = next((lnk for lnk in links if lnk.get("rel") == "child"), None)
        if link is None:
            raise PerlDie(f"resource '{path}' does not define child links\n")
        self._check_proxyto(info, dict(params, **uri_params))
        rel_path = "/" + "/".join(s for s in path.split("/") if s)
        self.called = True
        data = self.app.pvesh_call("GET", rel_path, params, self.identity)
        children = []
        match = re.match(r"^\{(\S+)\}$", link.get("href", ""))
        if match and isinstance(data, list):
            prop = match.group(1)
            items = [e for e in data if isinstance(e, dict)]
            children = [e.get(prop) for e in sorted(items, key=lambda e: str(e.get(prop, "")))]
        result = [{"name": child, "capabilities": self._resource_cap(f"{rel_path}/{child}")}
                  for child in children]
        stdopts.setdefault("noborder", "1")
        stdopts.setdefault("noheader", "1")
        stdopts["sort_key"] = "name"
        self._print_api_result(result, {"type": "array", "items": {"type": "object"}},
                               ["capabilities", "name"], stdopts)

    def _resource_cap(self, path):
        node, _ = self.app.schema.resolve(path)
        info = node.info if node else {}
        cap = "--"
        if "GET" in info:
            links = (info["GET"].get("returns") or {}).get("links") or []
            cap = "Dr" if any(lnk.get("rel") == "child" for lnk in links) else "-r"
        return cap + ("w" if "PUT" in info else "-") + ("c" if "POST" in info else "-") + \
            ("d" if "DELETE" in info else "-")

    def _cmd_usage(self, cmd, params):
        path = params["api_path"]
        found = False
        for name in ("get", "set", "create", "delete"):
            if params.get("command") and name != params["command"]:
                continue
            node, _ = self.app.schema.resolve(path)
            info = node.info.get(METHOD_MAP[name]) if node else None
            if info is None:
                continue
            found = True
            self.out.append(f"USAGE: pvesh {name} {path} [OPTIONS] [FORMAT_OPTIONS]\n")
            if params.get("returns") == "1":
                self.out.append("RETURNS: " + pretty_json(info.get("returns")))
        if not found:
            if params.get("command"):
                raise PerlDie(f"no '{params['command']}' handler for '{path}'\n")
            raise PerlDie(f"no such resource '{path}'\n")

    # --- PVE::CLIFormatter ------------------------------------------------------------

    def _print_api_result(self, data, schema, props_to_print, options):
        if options.get("quiet") == "1":
            return
        fmt = options.get("output-format", "text")
        if schema and schema.get("type") is not None:
            if schema["type"] == "null":
                return
            if schema.get("optional") and data is None:
                return
        else:
            schema = {"type": guess_type(data)}
            if schema["type"] == "array":
                schema["items"] = {"type": guess_type(data[0] if data else None)}
        if fmt == "json":
            self.out.append(compact_json(data) + "\n")
        elif fmt == "json-pretty":
            self.out.append(pretty_json(data))
        elif fmt == "yaml":
            raise ApiError(501, "pve-sim: pvesh --output-format yaml is not simulated (use json)")
        else:
            self._print_text(data, schema, props_to_print, options)

    def _print_text(self, data, schema, props_to_print, options):
        type_ = schema.get("type")
        if type_ == "object":
            props = schema.get("properties") or {}
            if props_to_print is None:
                props_to_print = extract_properties_to_print(props)
            if not props_to_print:
                props_to_print = sorted(data or {})
            rows = [{"key": key, "value": self._data_to_text(data[key], props.get(key), options)}
                    for key in props_to_print if (data or {}).get(key) is not None]
            self._print_table(rows, {}, ["key", "value"], options)
        elif type_ == "array":
            if isinstance(data, list) and not data:
                return
            if isinstance(data, dict):
                if not data:
                    return
                raise PerlDie("got hash object, but result schema specified array!\n")
            items = schema.get("items") or {}
            if items.get("type") == "object":
                props = items.get("properties") or {}
                if props_to_print is None:
                    props_to_print = extract_properties_to_print(props)
                if not props_to_print:
                    props_to_print = sorted({k for obj in data for k in obj})
                if not props_to_print:
                    raise PerlDie("unable to detect list properties\n")
                rows = [{p: self._data_to_text(obj.get(p), props.get(p), options) for p in props_to_print}
                        for obj in data]
                self._print_table(rows, props, props_to_print, options, raw=data)
            else:
                rows = [{"value": self._data_to_text(v, items, options)} for v in data]
                self._print_table(rows, {"value": items}, ["value"], dict(options, noheader="1"))
        else:
            self.out.append(("" if data is None else perl_str(data)) + "\n")

    @staticmethod
    def _data_to_text(data, propdef, options):
        """data_to_text; renderers (bytes, timestamp, duration, ...) are not applied."""
        if data is None:
            return ""
        if options.get("human-readable", "1") == "1" and propdef and propdef.get("type") == "boolean":
            return "1" if data and data not in ("0", 0) else "0"
        if isinstance(data, (dict, list)):
            return compact_json(data, ascii_safe=False)
        return perl_str(data)

    def _print_table(self, rows, props, props_to_print, options, raw=None):
        """print_text_table (sorted by the first column or `sort_key`)."""
        show_border = options.get("noborder", "0") != "1"
        show_header = options.get("noheader", "0") != "1"
        utf8 = self.term.get("encoding") == "UTF-8"
        columns = self.term.get("columns") if self.term.get("tty") else None
        sort_key = options.get("sort_key", props_to_print[0])
        if raw is not None:
            pairs = list(zip(raw, rows))
        else:
            pairs = [(row, row) for row in rows]
        if sort_key and raw is not None:
            numeric = (props.get(sort_key) or {}).get("type") in ("integer", "number")

            def key(pair):
                value = pair[0].get(sort_key)
                if value is None:
                    return (0, 0)
                return (1, float(value)) if numeric else (1, perl_str(value))
            pairs.sort(key=key)
        elif sort_key:
            pairs.sort(key=lambda pair: perl_str(pair[1].get(sort_key, "")))
        table = []
        for _, row in pairs:
            cells = {p: row.get(p, "").split("\n") if row.get(p, "") != "" else [] for p in props_to_print}
            height = max([1] + [len(lines) for lines in cells.values()])
            table.append((height, cells))
        fmt_parts, border = [], {"m": "", "b": "", "t": "", "h": ""}
        count = len(props_to_print)
        widths = {}
        for i, prop in enumerate(props_to_print):
            info = props.get(prop) or {}
            title = info.get("title", prop)
            longest = max([len(title)] + [max([len(line) for line in cells[prop]] or [0]) for _, cells in table])
            cutoff = info.get("print_width", info.get("maxLength"))
            cutoff = longest if cutoff is None or cutoff > longest else cutoff
            widths[prop] = (title, cutoff)
            left = info.get("type", "string") not in ("integer", "number")
            cell = ("{:<%d}" if left else "{:>%d}") % cutoff if cutoff else "{}"
            if show_border:
                first, last = i == 0, i == count - 1
                h, v = ("─", "│") if utf8 else ("-", "|")
                fmt_parts.append(f"{v} {cell} " + (v if last else ""))
                if utf8:
                    lc = "┌├╞└" if first else "┬┼╪┴"
                    border["t"] += lc[0] + "─" * (cutoff + 2) + ("┐" if last else "")
                    border["m"] += lc[1] + "─" * (cutoff + 2) + ("┤" if last else "")
                    border["h"] += lc[2] + "═" * (cutoff + 2) + ("╡" if last else "")
                    border["b"] += lc[3] + "─" * (cutoff + 2) + ("┘" if last else "")
                else:
                    border["m"] += "+-" + h * cutoff + ("-+" if last else "-")
                    border["h"] += "+=" + "=" * cutoff + ("=+" if last and not first else "=")
            else:
                fmt_parts.append("{}" if i == count - 1 else cell + " ")
        border["t"] = border["t"] or border["m"]
        border["b"] = border["b"] or border["m"]
        template = "".join(fmt_parts)

        def writeln(text):
            self.out.append((text[:columns] if columns else text) + "\n")

        if show_border:
            writeln(border["t"])
        sep = border["m"]
        if show_header:
            writeln(template.format(*[widths[p][0] for p in props_to_print]))
            sep = border["h"]
        for index, (height, cells) in enumerate(table):
            if show_border and (index != 0 or show_header):
                writeln(sep)
                sep = border["m"]
            for line in range(height):
                writeln(template.format(*[(cells[p][line] if line < len(cells[p]) else "")[:widths[p][1]]
                                          for p in props_to_print]))
        if show_border:
            writeln(border["b"])


def guess_type(data):
    if isinstance(data, list):
        return "array"
    if isinstance(data, dict):
        return "object"
    return "string"


def extract_properties_to_print(propdef):
    required = sorted(k for k, p in propdef.items() if not p.get("optional"))
    optional = sorted(k for k, p in propdef.items() if p.get("optional"))
    return required + optional


def perl_str(value):
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def compact_json(data, ascii_safe=False):
    """to_json($data, {utf8 => 1, allow_nonref => 1, canonical => 1})."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_safe)


def pretty_json(data, level=0):
    """JSON::XS `pretty` (indent 3, `"key" : value`), canonical, with the final newline."""
    return _pretty(data, 0) + "\n"


def _pretty(data, level):
    pad, inner = "   " * level, "   " * (level + 1)
    if isinstance(data, dict):
        if not data:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)} : {_pretty(v, level + 1)}"
                 for k, v in sorted(data.items())]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(data, list):
        if not data:
            return "[]"
        return "[\n" + ",\n".join(inner + _pretty(v, level + 1) for v in data) + "\n" + pad + "]"
    return json.dumps(data, ensure_ascii=False)
