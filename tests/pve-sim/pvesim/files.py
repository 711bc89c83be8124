"""Files the simulator writes into DIR: atomic JSON, JSONL journals, faults.json.

- ready.json / state.json are replaced atomically (write a temp file, rename).
- requests.jsonl / violations.jsonl get one JSON object per line; the API
  token's secret is redacted from every line before it is written.
- faults.json is read on every request; a fault marked "once" is removed
  (rewritten atomically) when it fires. See README.md for its format.
"""

import json
import os
import re
import sys
import threading
import time


def write_json_atomic(path, obj):
    tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)  # readers see the old or the new file, never a partial one


class Journal:
    """requests.jsonl (every request) and violations.jsonl (every rejection/501)."""

    def __init__(self, directory, secret):
        self.requests_path = os.path.join(directory, "requests.jsonl")
        self.violations_path = os.path.join(directory, "violations.jsonl")
        self.secret = secret
        self.lock = threading.Lock()

    def _append(self, path, record):
        record = dict(record, time=round(time.time(), 3))
        line = json.dumps(record, sort_keys=True)
        if len(self.secret) >= 4:
            line = line.replace(self.secret, "***")
        with self.lock, open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def request(self, record):
        self._append(self.requests_path, record)

    def violation(self, record):
        self._append(self.violations_path, record)


FAULT_KEYS = (
    "drop_upload_after_bytes", "drop_after_create", "drop_response", "fail_request",
    "fail_task", "task_polls", "agent_pings_before_ready",
)


class Faults:
    """faults.json: a flat fault object, or {"faults": [fault objects]}."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "faults.json")
        self.lock = threading.Lock()

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None, []
        except (OSError, ValueError) as err:
            print(f"pve-sim: ignoring unreadable faults.json: {err}", file=sys.stderr)
            return None, []
        if isinstance(data, dict) and isinstance(data.get("faults"), list):
            return "list", [f for f in data["faults"] if isinstance(f, dict)]
        if isinstance(data, dict):
            return "flat", [data]
        return None, []

    def _write(self, form, entries):
        if form == "flat":
            write_json_atomic(self.path, entries[0] if entries else {})
        else:
            write_json_atomic(self.path, {"faults": entries})

    def peek(self, key):
        """The value of the first fault `key`, without consuming it."""
        with self.lock:
            _, entries = self._read()
        return next((fault[key] for fault in entries if key in fault), None)

    def take(self, key, match=None):
        """The value of the first fault `key` (that `match`es); consumes it if "once"."""
        with self.lock:
            form, entries = self._read()
            for index, fault in enumerate(entries):
                if key not in fault or (match and not match(fault[key])):
                    continue
                value = fault[key]
                if fault.get("once"):
                    del fault[key]
                    if not any(k in fault for k in FAULT_KEYS):
                        entries.pop(index)
                    self._write(form, entries)
                return value
        return None


def redact_token_secret(token):
    """'user@realm!id=SECRET' -> SECRET (PVE splits on the last '=')."""
    match = re.match(r"^(.*)=([^=]*)$", token)
    return match.group(2) if match else ""
