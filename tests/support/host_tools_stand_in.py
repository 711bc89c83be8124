#!/usr/bin/python3
"""Stand-in for the Proxmox host's own tools that cannot run in a test:
systemctl, zfs, targetcli, useradd, getent, and (when the Proxmox simulator
is not wired in) pvesh. Called by the name it is linked as.

Every call is appended to $STAND_IN_LOG as `tool arg...`, then checked
against the real command's documented grammar — an argument the real tool
would reject is rejected here with a usage error, so a host script that
calls a tool wrongly fails its test:

* systemctl(1), systemd 257 (Debian 13): `systemctl [--quiet] [--now]
  VERB [UNIT...]`; verbs daemon-reload (no unit) and the unit commands
  start, stop, reload, restart, try-restart, reload-or-restart,
  try-reload-or-restart, is-active, is-failed, status, enable, disable,
  reenable, is-enabled, mask, unmask (one or more units). An unknown verb:
  `Unknown command verb 'x'.`, exit 1.
* zfs(8), OpenZFS 2.3 (zfs-list(8), zfs-create(8), zfs-get(8), zfs-set(8),
  zfs-allow(8)): `list [-H] [-o FIELD[,...]] [DATASET]`, `create [-p]
  DATASET`, `get [-Hp] [-o FIELD[,...]] PROP[,...] DATASET`, `set
  PROP=VALUE DATASET`, `allow -l|-d -u USER PERM[,...] DATASET`; a usage
  error exits 2.
* targetcli(8), targetcli-fb 2.1: `targetcli` (commands on stdin), `get
  global NAME`, `set global NAME=VALUE` (prints `Parameter NAME is now
  'VALUE'.`).
* useradd(8), shadow 4.17: long options --system, --user-group,
  --gid=GROUP, --no-create-home, --home-dir DIR, --shell SHELL,
  --password HASH, then one LOGIN matching `[a-z_][a-z0-9_-]*[$]?`;
  an unknown option exits 2, a login that exists exits 9.
* getent(1), glibc 2.41: `getent DATABASE KEY`; a key not found exits 2,
  an unknown database exits 1.
* pvesh(1): `pvesh get|set /storage/ID [--content LIST]
  [--output-format json]` — what the host setup asks of storages — and the
  guest agent through the cluster's API (apidata.json): `pvesh create
  /nodes/{node}/qemu/{vmid}/agent/exec --command PART [--command PART...]
  [--input-data DATA]` (`command` an array, required, one option per
  part; `additionalProperties: 0`), answering `{"pid": N}`, and `pvesh get
  /nodes/{node}/qemu/{vmid}/agent/exec-status --pid N` (`pid` an integer,
  required), answering `exited` false the first time a pid is asked about
  (a command still running) and then its exec-status object as `qm guest
  exec` has it; `node` a pve-node name, `vmid` 100–999999999, a pid never
  started an error. The guest is `guests/VMID/` as for qm, and `--command`
  runs only `cat FILE` there.
* qm(1), qemu-server 9 (`qm guest exec <vmid> [<extra-args>] [OPTIONS]`,
  options `--pass-stdin <boolean>`, `--synchronous <boolean>`, `--timeout
  <integer>`, the command after `--`): only `guest exec`, and in the guest
  only `cat FILE`. The guest's files are `guests/VMID/` beside the log; a
  VM without that directory answers as one whose agent does not run
  (`QEMU guest agent is not running`, exit 255). The answer is the
  exec-status object qm prints (`exited`, `exitcode`, `out-data`,
  `err-data`; apidata.json `/nodes/{node}/qemu/{vmid}/agent/exec-status`)
  as pretty JSON with sorted keys.

State (beside the log): `storage-ID` (content types), `zfs` (datasets),
`quota-DATASET`, `users`, `groups`, `targetcli` (global preferences,
default true). `systemctl reload ssh` sends SIGHUP to the sshd whose pid
file $SSHD_PIDFILE names (the lab's sshd is the host's).
"""

import json
import os
import re
import signal
import sys

LOG = os.environ["STAND_IN_LOG"]
STATE = os.path.join(os.path.dirname(LOG), "storage")


def usage(tool, message, code=2):
    print(f"{tool}: {message}", file=sys.stderr)
    sys.exit(code)


def read_lines(name):
    try:
        with open(f"{STATE}-{name}", encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]
    except FileNotFoundError:
        return []


def append(name, line):
    with open(f"{STATE}-{name}", "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def write(name, text):
    with open(f"{STATE}-{name}", "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


UNIT_VERBS = (
    "start", "stop", "reload", "restart", "try-restart", "reload-or-restart",
    "try-reload-or-restart", "is-active", "is-failed", "status", "enable",
    "disable", "reenable", "is-enabled", "mask", "unmask",
)


def systemctl(args):
    args = [a for a in args if a not in ("--quiet", "-q", "--now")]
    if any(a.startswith("-") for a in args):
        usage("systemctl", f"unrecognized option '{next(a for a in args if a.startswith('-'))}'", 1)
    if not args:
        usage("systemctl", "too few arguments", 1)
    verb, units = args[0], args[1:]
    if verb == "daemon-reload":
        if units:
            usage("systemctl", "This command expects no arguments.", 1)
    elif verb in UNIT_VERBS:
        if not units:
            usage("systemctl", "Too few arguments.", 1)
        if verb == "reload" and ("ssh" in units or "ssh.service" in units):
            with open(os.environ["SSHD_PIDFILE"], encoding="ascii") as handle:
                os.kill(int(handle.read().strip()), signal.SIGHUP)
    else:
        usage("systemctl", f"Unknown command verb '{verb}'.", 1)


def zfs_options(args, allowed):
    """Short options (clustered, e.g. -Hp) and `-o VALUE`; returns (options, operands)."""
    options, operands, i = {}, [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and len(arg) > 1:
            for j, letter in enumerate(arg[1:]):
                if letter not in allowed:
                    usage("zfs", f"invalid option '{letter}'")
                if allowed[letter]:  # takes a value
                    rest = arg[2 + j:]
                    if not rest:
                        i += 1
                        if i >= len(args):
                            usage("zfs", f"missing argument for '{letter}' option")
                        rest = args[i]
                    options[letter] = rest
                    break
                options[letter] = True
        else:
            operands.append(arg)
        i += 1
    return options, operands


DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*(/[A-Za-z0-9_.:-]+)*$")


def zfs(args):
    if not args:
        usage("zfs", "missing command")
    command, rest = args[0], args[1:]
    datasets = read_lines("zfs")
    if command == "list":
        _, operands = zfs_options(rest, {"H": False, "o": True})
        if len(operands) > 1:
            usage("zfs", "too many arguments")
        if operands and operands[0] not in datasets:
            print(f"cannot open '{operands[0]}': dataset does not exist", file=sys.stderr)
            sys.exit(1)
        for dataset in operands or datasets:
            print(dataset)
    elif command == "create":
        _, operands = zfs_options(rest, {"p": False})
        if len(operands) != 1 or not DATASET.match(operands[0]):
            usage("zfs", "missing or invalid dataset argument")
        if operands[0] not in datasets:
            append("zfs", operands[0])
    elif command == "get":
        _, operands = zfs_options(rest, {"H": False, "p": False, "o": True})
        if len(operands) != 2:
            usage("zfs", "missing property or dataset argument")
        if operands[1] not in datasets:
            print(f"cannot open '{operands[1]}': dataset does not exist", file=sys.stderr)
            sys.exit(1)
        quota = read_lines("quota-" + operands[1].replace("/", "_"))
        print(quota[-1] if quota else "0")
    elif command == "set":
        if len(rest) != 2 or "=" not in rest[0]:
            usage("zfs", "missing property=value or dataset argument")
        prop, value = rest[0].split("=", 1)
        if prop == "quota":
            write("quota-" + rest[1].replace("/", "_"), value)
    elif command == "allow":
        options, operands = zfs_options(rest, {"l": False, "d": False, "u": True})
        if not ("l" in options or "d" in options) or "u" not in options or len(operands) != 2:
            usage("zfs", "usage: allow [-ldug] <\"everyone\"|user|group>[,...] <perm>[,...] <filesystem|volume>")
    else:
        usage("zfs", f"unrecognized command '{command}'")


def targetcli(args):
    if not args:
        sys.stdin.read()  # the commands of a script on stdin
        return
    if len(args) == 3 and args[:2] == ["get", "global"]:
        name = args[2]
        value = next((line for line in reversed(read_lines("targetcli")) if line.startswith(name + "=")), None)
        print(value or f"{name}=true")
    elif len(args) == 3 and args[:2] == ["set", "global"] and "=" in args[2]:
        append("targetcli", args[2])
        name, value = args[2].split("=", 1)
        print(f"Parameter {name} is now '{value}'.")
    else:
        usage("targetcli", f"No such command {' '.join(args)}", 1)


def useradd(args):
    known = {"--system", "--user-group", "--no-create-home"}
    with_value = {"--gid", "--home-dir", "--shell", "--password"}
    seen, operands, i = set(), [], 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if name in known:
            seen.add(name)
        elif name in with_value:
            if "=" not in arg:
                i += 1
                if i >= len(args):
                    usage("useradd", f"option '{name}' requires an argument")
            seen.add(name)
        elif arg.startswith("-"):
            usage("useradd", f"unrecognized option '{arg}'")
        else:
            operands.append(arg)
        i += 1
    if len(operands) != 1 or not re.match(r"^[a-z_][a-z0-9_-]*[$]?$", operands[0]):
        usage("useradd", "invalid user name or arguments")
    if operands[0] in read_lines("users"):
        usage("useradd", f"user '{operands[0]}' already exists", 9)
    append("users", operands[0])
    if "--user-group" in seen:
        append("groups", operands[0])


def getent(args):
    if len(args) != 2:
        usage("getent", "wrong number of arguments", 1)
    database, key = args
    if database == "passwd":
        if key not in read_lines("users"):
            sys.exit(2)
        print(f"{key}:x:999:999::/var/lib/{key}:/bin/sh")
    elif database == "group":
        if key not in read_lines("groups"):
            sys.exit(2)
        print(f"{key}:x:999:")
    else:
        usage("getent", f"Unknown database: {database}", 1)


AGENT_PATH = re.compile(r"/nodes/([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)/qemu/([^/]+)/agent/(exec|exec-status)")


def pvesh_agent(verb, path, options):
    """`agent/exec` and `agent/exec-status`, as apidata.json has them."""
    match = AGENT_PATH.fullmatch(path)
    vmid, call = match.group(3), match.group(4)
    if not re.fullmatch(r"[1-9][0-9]{2,8}", vmid):
        usage("pvesh", "400 Parameter verification failed.\nvmid: type check ('integer') failed", 255)
    expected = {"exec": "create", "exec-status": "get"}[call]
    if verb != expected:
        usage("pvesh", f"Method '{verb.upper()} {path}' not implemented", 255)
    allowed = {"exec": ("command", "input-data"), "exec-status": ("pid",)}[call]
    given = {}
    while options:
        option = options.pop(0)
        name = option[2:] if option.startswith("--") else None
        if name not in allowed:
            usage("pvesh", f"400 Parameter verification failed.\n{option.lstrip('-')}: property is not defined in schema and the schema does not allow additional properties", 255)
        if not options:
            usage("pvesh", f"400 Parameter verification failed.\n{name}: missing value", 255)
        given.setdefault(name, []).append(options.pop(0))
    runs = os.path.join(os.path.dirname(LOG), "agent-exec")
    if call == "exec":
        if "command" not in given:
            usage("pvesh", "400 Parameter verification failed.\ncommand: property is missing and it is not optional", 255)
        if len(given.get("input-data", [])) > 1:
            usage("pvesh", "400 Parameter verification failed.\ninput-data: type check ('string') failed", 255)
        guest = os.path.join(os.path.dirname(LOG), "guests", vmid)
        if not os.path.isdir(guest):
            usage("pvesh", "QEMU guest agent is not running", 255)
        command = given["command"]
        if command[0] != "cat" or len(command) != 2:
            status = {"exited": 1, "exitcode": 127, "err-data": f"stand-in guest: cannot run {command[0]}\n"}
        else:
            try:
                with open(os.path.join(guest, command[1].lstrip("/")), encoding="utf-8") as handle:
                    status = {"exited": 1, "exitcode": 0, "out-data": handle.read()}
            except FileNotFoundError:
                status = {"exited": 1, "exitcode": 1, "err-data": f"cat: {command[1]}: No such file or directory\n"}
        os.makedirs(runs, exist_ok=True)
        pid = 1000 + len(os.listdir(runs))
        with open(os.path.join(runs, f"{vmid}-{pid}"), "w", encoding="utf-8") as handle:
            json.dump(status, handle)
        print(json.dumps({"pid": pid}))
        return
    pids = given.get("pid", [])
    if len(pids) != 1 or not re.fullmatch(r"-?[0-9]+", pids[0]):
        usage("pvesh", "400 Parameter verification failed.\npid: type check ('integer') failed", 255)
    run = os.path.join(runs, f"{vmid}-{pids[0]}")
    if not os.path.isfile(run):
        usage("pvesh", f"Agent error: PID {pids[0]} does not exist", 255)
    if not os.path.exists(run + ".asked"):
        open(run + ".asked", "w", encoding="utf-8").close()
        print(json.dumps({"exited": 0}))
        return
    with open(run, encoding="utf-8") as handle:
        print(json.dumps(json.load(handle), indent=3, sort_keys=True))


def pvesh(args):
    if "--output-format" in args:
        at = args.index("--output-format")
        if at + 1 >= len(args) or args[at + 1] not in ("json", "json-pretty", "text", "yaml"):
            usage("pvesh", "400 Parameter verification failed.\noutput-format: value is not a valid enum value", 255)
        args = args[:at] + args[at + 2:]
    if len(args) >= 2 and AGENT_PATH.fullmatch(args[1]):
        pvesh_agent(args[0], args[1], args[2:])
        return
    if len(args) < 2 or args[0] not in ("get", "set") or not args[1].startswith("/storage/"):
        usage("pvesh", "400 Parameter verification failed.", 255)
    name = args[1][len("/storage/"):]
    if args[0] == "get":
        stored = read_lines("storage-" + name)
        content = stored[-1] if stored else ("iso,vztmpl,backup" if name == "local" else "images,rootdir")
        print(f'{{"content":"{content}","storage":"{name}"}}')
    elif len(args) == 4 and args[2] == "--content":
        write("storage-" + name, args[3])
    else:
        usage("pvesh", "400 Parameter verification failed.", 255)


def qm(args):
    if args[:2] != ["guest", "exec"]:
        usage("qm", "unknown command 'qm " + " ".join(args[:2]) + "' (the stand-in knows only 'guest exec')", 255)
    args = args[2:]
    if not args or not re.fullmatch(r"[1-9][0-9]{2,8}", args[0]):
        usage("qm", "400 Parameter verification failed.\nvmid: type check ('integer') failed", 255)
    vmid, rest = args[0], args[1:]
    command = []
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            command = rest
            break
        if arg in ("--pass-stdin", "--synchronous"):
            if not rest or rest[0] not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
                usage("qm", f"400 Parameter verification failed.\n{arg[2:]}: type check ('boolean') failed", 255)
            rest.pop(0)
        elif arg == "--timeout":
            if not rest or not rest[0].isdigit():
                usage("qm", "400 Parameter verification failed.\ntimeout: type check ('integer') failed", 255)
            rest.pop(0)
        elif arg.startswith("-"):
            usage("qm", f"400 Parameter verification failed.\n{arg.lstrip('-')}: property is not defined in schema and the schema does not allow additional properties", 255)
        else:
            command = [arg] + rest
            break
    if not command:
        usage("qm", "400 Parameter verification failed.\nextra-args: no command given", 255)
    guest = os.path.join(os.path.dirname(LOG), "guests", vmid)
    if not os.path.isdir(guest):
        usage("qm", "QEMU guest agent is not running", 255)
    if command[0] != "cat" or len(command) != 2:
        status = {"exited": 1, "exitcode": 127, "err-data": f"stand-in guest: cannot run {command[0]}\n"}
    else:
        try:
            with open(os.path.join(guest, command[1].lstrip("/")), encoding="utf-8") as handle:
                status = {"exited": 1, "exitcode": 0, "out-data": handle.read()}
        except FileNotFoundError:
            status = {"exited": 1, "exitcode": 1, "err-data": f"cat: {command[1]}: No such file or directory\n"}
    print(json.dumps(status, indent=3, sort_keys=True))


TOOLS = {
    "systemctl": systemctl,
    "zfs": zfs,
    "targetcli": targetcli,
    "useradd": useradd,
    "getent": getent,
    "pvesh": pvesh,
    "qm": qm,
}


def main():
    tool = os.path.basename(sys.argv[0])
    with open(LOG, "a", encoding="utf-8") as handle:
        handle.write(" ".join([tool] + sys.argv[1:]) + "\n")
    TOOLS[tool](sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
