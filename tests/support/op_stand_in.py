#!/usr/bin/python3
"""Stand-in for the 1Password CLI `op` (v2), for the commands waddlec runs.

Grammar, from developer.1password.com/docs/cli/reference/commands/read,
.../management-commands/item and .../management-commands/document (op 2.x):
  op read [--no-newline] op://VAULT/ITEM/FIELD
  op item create --vault VAULT --category CATEGORY --title TITLE --template FILE [--format json]
  op item edit ITEM --vault VAULT --template FILE [--format json]
  op document get { ITEM } [--vault VAULT] [--out-file PATH] [--file-mode MODE]
                  [--force] [--include-archive]
  op document create { FILE | - } [--vault VAULT] [--title TITLE] [--file-name NAME] [--tags TAGS]
  op document edit ITEM { FILE | - } [--vault VAULT] [--title TITLE] [--file-name NAME] [--tags TAGS]
`--format` is a global flag. A document's file comes from FILE or, for
`-`, from stdin; `op read op://VAULT/ITEM/FILE` names a document's file by
its name (the secret reference syntax for files,
developer.1password.com/docs/cli/secret-reference-syntax). Item templates:
developer.1password.com/docs/cli/item-template-json (title, category,
fields[] with id/label/type/value). Anything else is refused with op's
error shape (`[ERROR] YYYY/MM/DD HH:MM:SS message`, exit 1).

Unlike op, which lets two items share a title, creating an item or
document whose title the vault already holds fails: waddlec must look
before it creates, and a test should see it if it does not.

With $OP_STAND_IN_READ_ONLY set, writes fail as for an account that may
only read the vault (`You do not have permission to perform this action`).

Every command line is logged whole (`argv [...]`), then what it did.
State: $OP_STAND_IN_DIR/items.json ({vault: {item: {field: value}}}) and
documents.json ({vault: {item: {file_name, content}}}); a vault exists once
either names it. Every call is appended to $OP_STAND_IN_DIR/calls.log with
secret values never written (templates are logged as their file mode and
field labels only, documents as their size and where they came from).
"""

import json
import os
import stat
import sys
import time

STATE_DIR = os.environ["OP_STAND_IN_DIR"]
ITEMS = os.path.join(STATE_DIR, "items.json")
DOCUMENTS = os.path.join(STATE_DIR, "documents.json")


def fail(message):
    print(time.strftime("[ERROR] %Y/%m/%d %H:%M:%S ") + message, file=sys.stderr)
    sys.exit(1)


def log(line):
    with open(os.path.join(STATE_DIR, "calls.log"), "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def load(path=ITEMS):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def save(state, path=ITEMS):
    with open(path + ".new", "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(path + ".new", path)


def flags(args, allowed, positional_max, switches=()):
    """`--name value` / `--name=value` flags and `--switch`es (op uses
    cobra), `-o` for `--out-file`, plus positionals (`-` is one)."""
    values, positional = {}, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-o":
            arg = "--out-file"
        if arg.startswith("--"):
            name, equals, value = arg[2:].partition("=")
            if name in switches and not equals:
                values[name] = True
                i += 1
                continue
            if name not in allowed:
                fail(f'unknown flag: --{name}')
            if not equals:
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


def vault_of(name, items, documents):
    if name not in items and name not in documents:
        fail(f'"{name}" isn\'t a vault in this account. Specify the vault with its ID or name.')
    return documents.setdefault(name, {})


def not_an_item(item, vault):
    fail(f'"{item}" isn\'t an item in the "{vault}" vault. Specify the item with its UUID, name, or domain.')


def document_contents(source):
    """The file of `document create`/`edit`: a path, or stdin for `-`."""
    if source == "-":
        return sys.stdin.read(), "stdin"
    mode = stat.S_IMODE(os.stat(source).st_mode)
    with open(source, encoding="utf-8") as handle:
        return handle.read(), f"a file of mode {mode:o}"


def document(argv, items, documents):
    """`op document get|create|edit`."""
    verb, args = argv[1], argv[2:]
    if verb in ("create", "edit") and os.environ.get("OP_STAND_IN_READ_ONLY"):
        log(f"document {verb} refused")
        fail("You do not have permission to perform this action.")
    if verb == "get":
        values, positional = flags(
            args, {"vault", "out-file", "file-mode", "format"}, 1, ("force", "include-archive"))
        if len(positional) != 1 or "vault" not in values:
            fail("expected: op document get ITEM --vault VAULT")
        item, name = positional[0], values["vault"]
        log(f"document get {item} --vault {name}")
        vault = vault_of(name, items, documents)
        if item not in vault:
            not_an_item(item, name)
        content = vault[item]["content"]
        if "out-file" in values:
            fail("the stand-in does not write --out-file")
        sys.stdout.write(content)
        return 0
    written = {"title", "file-name", "tags", "vault", "format"}
    if verb == "create":
        values, positional = flags(args, written, 1)
        if len(positional) != 1 or "vault" not in values or "title" not in values:
            fail("expected: op document create { FILE | - } --vault VAULT --title TITLE")
        item = values["title"]
        vault = vault_of(values["vault"], items, documents)
        if item in vault or item in items.get(values["vault"], {}):
            fail(f'an item named "{item}" already exists')  # op would make a second one
        content, source = document_contents(positional[0])
        log(f"document create --vault {values['vault']} --title {item} "
            f"--file-name {values.get('file-name')} from {source}, {len(content)} bytes")
        vault[item] = {"file_name": values.get("file-name", positional[0]), "content": content}
        save(documents, DOCUMENTS)
        print(json.dumps({"title": item, "vault": {"name": values["vault"]}}))
        return 0
    if verb == "edit":
        values, positional = flags(args, written, 2)
        if len(positional) != 2 or "vault" not in values:
            fail("expected: op document edit ITEM { FILE | - } --vault VAULT")
        item, name = positional[0], values["vault"]
        vault = vault_of(name, items, documents)
        if item not in vault:
            not_an_item(item, name)
        content, source = document_contents(positional[1])
        log(f"document edit {item} --vault {name} "
            f"--file-name {values.get('file-name')} from {source}, {len(content)} bytes")
        vault[item]["content"] = content
        if "file-name" in values:
            vault[item]["file_name"] = values["file-name"]
        save(documents, DOCUMENTS)
        return 0
    fail(f'unknown command "{verb}" for "op document"')
    return 1


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
    # The whole command line, so a test can see that no value is on it.
    log("argv " + json.dumps(argv))
    items = load()
    documents = load(DOCUMENTS)
    if argv[0] == "document" and len(argv) > 1:
        return document(argv, items, documents)
    if argv[0] == "read":
        args = [a for a in argv[1:] if a != "--no-newline"]
        if len(args) != 1 or not args[0].startswith("op://"):
            fail("expected one secret reference op://vault/item/field")
        log(f"read {args[0]}")
        parts = args[0][len("op://"):].split("/")
        if len(parts) != 3:
            fail(f'invalid secret reference "{args[0]}"')
        vault, item, field = parts
        if vault not in items and vault not in documents:
            fail(f'"{vault}" isn\'t a vault in this account. Specify the vault with its ID or name.')
        held = documents.get(vault, {}).get(item)
        if held is not None:
            # A document's file, by its name.
            if field != held["file_name"]:
                fail(f'"{field}" isn\'t a field or file in the "{item}" item')
            sys.stdout.write(held["content"])
            return 0
        if item not in items.get(vault, {}):
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
