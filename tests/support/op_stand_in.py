#!/usr/bin/python3
"""Stand-in for the 1Password CLI `op` (v2), for the commands waddlec runs.

Grammar, from developer.1password.com/docs/cli/reference/commands/read and
.../management-commands/item (op 2.x):
  op read [--no-newline] op://VAULT/ITEM/FIELD
  op item create --vault VAULT --category CATEGORY --title TITLE --template FILE [--format json]
  op item edit ITEM --vault VAULT --template FILE [--format json]
Item templates: developer.1password.com/docs/cli/item-template-json (title,
category, fields[] with id/label/type/value). Anything else is refused with
op's error shape (`[ERROR] YYYY/MM/DD HH:MM:SS message`, exit 1).

With $OP_STAND_IN_READ_ONLY set, writes fail as for an account that may
only read the vault (`You do not have permission to perform this action`).

State: $OP_STAND_IN_DIR/items.json ({vault: {item: {field: value}}}); every
call is appended to $OP_STAND_IN_DIR/calls.log with secret values never
written (templates are logged as their file mode and field labels only).
"""

import json
import os
import stat
import sys
import time

STATE_DIR = os.environ["OP_STAND_IN_DIR"]
ITEMS = os.path.join(STATE_DIR, "items.json")


def fail(message):
    print(time.strftime("[ERROR] %Y/%m/%d %H:%M:%S ") + message, file=sys.stderr)
    sys.exit(1)


def log(line):
    with open(os.path.join(STATE_DIR, "calls.log"), "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def load():
    try:
        with open(ITEMS, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def save(items):
    with open(ITEMS + ".new", "w", encoding="utf-8") as handle:
        json.dump(items, handle)
    os.replace(ITEMS + ".new", ITEMS)


def flags(args, allowed, positional_max):
    """`--name value` / `--name=value` flags (op uses cobra), plus positionals."""
    values, positional = {}, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            if name not in allowed:
                fail(f'unknown flag: --{name}')
            if not value:
                i += 1
                if i >= len(args):
                    fail(f'flag needs an argument: --{name}')
                value = args[i]
            values[name] = value
        else:
            positional.append(arg)
        i += 1
    if len(positional) > positional_max:
        fail(f'accepts at most {positional_max} arg(s), received {len(positional)}')
    return values, positional


def read_template(path):
    mode = stat.S_IMODE(os.stat(path).st_mode)
    with open(path, encoding="utf-8") as handle:
        try:
            template = json.load(handle)
        except json.JSONDecodeError:
            fail("invalid JSON in template")
    fields = template.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, dict) and "value" in f for f in fields):
        fail("template: fields must be a list of objects with a value")
    labels = [f.get("label") or f.get("id") for f in fields]
    log(f"template mode {mode:o} category {template.get('category')} fields {','.join(labels)}")
    return template, {(f.get("label") or f.get("id")): f["value"] for f in fields}


def main(argv):
    if not argv:
        fail("no command given")
    items = load()
    if argv[0] == "read":
        args = [a for a in argv[1:] if a != "--no-newline"]
        if len(args) != 1 or not args[0].startswith("op://"):
            fail("expected one secret reference op://vault/item/field")
        log(f"read {args[0]}")
        parts = args[0][len("op://"):].split("/")
        if len(parts) != 3:
            fail(f'invalid secret reference "{args[0]}"')
        vault, item, field = parts
        if vault not in items:
            fail(f'"{vault}" isn\'t a vault in this account. Specify the vault with its ID or name.')
        if item not in items[vault]:
            fail(f'"{item}" isn\'t an item in the "{vault}" vault. Specify the item with its UUID, name, or domain.')
        if field not in items[vault][item]:
            fail(f'"{field}" isn\'t a field in the "{item}" item')
        sys.stdout.write(items[vault][item][field])
        if "--no-newline" not in argv:
            sys.stdout.write("\n")
        return 0
    if argv[:2] in (["item", "create"], ["item", "edit"]) and os.environ.get("OP_STAND_IN_READ_ONLY"):
        log(" ".join(argv[:2]) + " refused")
        fail("You do not have permission to perform this action.")
    if argv[:2] == ["item", "create"]:
        values, positional = flags(argv[2:], {"vault", "category", "title", "template", "format"}, 0)
        for required in ("vault", "title", "template"):
            if required not in values:
                fail(f"--{required} is required here")
        log(f"item create --vault {values['vault']} --title {values['title']}")
        _, fields = read_template(values["template"])
        vault = items.setdefault(values["vault"], {})
        if values["title"] in vault:
            fail(f'an item named "{values["title"]}" already exists')  # op would make a second one
        vault[values["title"]] = fields
        save(items)
        print(json.dumps({"title": values["title"], "vault": {"name": values["vault"]}}))
        return 0
    if argv[:2] == ["item", "edit"]:
        values, positional = flags(argv[2:], {"vault", "template", "format"}, 1)
        if len(positional) != 1 or "vault" not in values:
            fail("expected: op item edit ITEM --vault VAULT")
        item = positional[0]
        log(f"item edit {item} --vault {values['vault']}")
        if item not in items.get(values["vault"], {}):
            fail(f'"{item}" isn\'t an item in the "{values["vault"]}" vault. Specify the item with its UUID, name, or domain.')
        if "template" in values:
            _, fields = read_template(values["template"])
            items[values["vault"]][item].update(fields)
        save(items)
        print(json.dumps({"title": item}))
        return 0
    fail(f'unknown command "{argv[0]}" for "op"')
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
