"""Users, roles, ACLs, API tokens and permission checks (user.cfg + RPCEnvironment).

Transcribed (behaviour, not code) from pve-access-control at 5ccd07d9:
`src/PVE/AccessControl.pm` ($privgroups / create_roles: the privilege list and
the built-in roles; roles(): ACL walk with propagation, token > user > group,
NoAccess; check_path, normalize_path, verify_token, check_user_exist,
check_token_exist, delete_user_acl; parse_user_config drops ACL entries of
tokens that no longer exist), `src/PVE/RPCEnvironment.pm` (permissions():
root@pam has everything, non-privsep tokens get their user's privileges,
privsep tokens the intersection; $compile_acl_path: pool ACLs for pool
members; check/check_any/check_sdn_bridge/check_vm_perm/check_perm_modify;
exec_api2_perm_check and check_api2_permissions), `src/PVE/API2/User.pm`,
`Role.pm`, `ACL.pm`.

`Identity.authid` is what PVE calls the auth id (RPCEnvironment::get_user):
`user@realm` (pvesh: root@pam) or `user@realm!tokenid`. The start token
(`--token`) and pvesh are superusers: no permission checks at all.
"""

import hashlib
import re
import time
import uuid

from .state import ApiError, die, param_error

PRIVGROUPS = {  # category: (root, admin, user, audit) -- AccessControl.pm $privgroups
    "VM": ([], ["VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
                "VM.Config.HWType", "VM.Config.Options", "VM.Allocate", "VM.Clone", "VM.GuestAgent.Unrestricted",
                "VM.Migrate", "VM.Replicate", "VM.Snapshot", "VM.Snapshot.Rollback"],
           ["VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup", "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite", "VM.PowerMgmt"],
           ["VM.Audit", "VM.GuestAgent.Audit"]),
    "Sys": (["Sys.PowerMgmt", "Sys.Modify", "Sys.Incoming", "Sys.AccessNetwork"], ["Sys.Console", "Sys.Syslog"],
            [], ["Sys.Audit"]),
    "Datastore": ([], ["Datastore.Allocate", "Datastore.AllocateTemplate"], ["Datastore.AllocateSpace"],
                  ["Datastore.Audit"]),
    "SDN": ([], ["SDN.Allocate", "SDN.Audit"], ["SDN.Use"], ["SDN.Audit"]),
    "User": (["Realm.Allocate"], ["User.Modify", "Group.Allocate", "Realm.AllocateUser"], [], []),
    "Pool": ([], ["Pool.Allocate"], ["Pool.Audit"], ["Pool.Audit"]),
    "Mapping": ([], ["Mapping.Modify"], ["Mapping.Use"], ["Mapping.Audit"]),
}


def _builtin_roles():
    valid = {"Permissions.Modify"}
    roles = {"NoAccess": set()}
    for cat, (root, admin, user, audit) in PRIVGROUPS.items():
        valid.update(root + admin + user + audit)
        for priv in admin + user + audit:
            roles.setdefault(f"PVE{cat}Admin", set()).add(priv)
            roles.setdefault("PVEAdmin", set()).add(priv)
        if user:
            for priv in user + audit:
                roles.setdefault(f"PVE{cat}User", set()).add(priv)
        for priv in audit:
            roles.setdefault("PVEAuditor", set()).add(priv)
    roles["PVEAdmin"].discard("Mapping.Modify")
    roles["PVETemplateUser"] = {"VM.Clone", "VM.Audit"}
    roles["Administrator"] = set(valid)
    return valid, roles


VALID_PRIVS, BUILTIN_ROLES = _builtin_roles()
USER_RE = r"[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+"
TOKEN_RE = re.compile(rf"^({USER_RE})!([A-Za-z][A-Za-z0-9.\-_]+)$")
ACL_PATH_RE = re.compile(r"""^(
    /|/access|/access/groups|/access/groups/[A-Za-z0-9.\-_]+|/access/realm|/access/realm/[A-Za-z0-9.\-_]+
    |/nodes|/nodes/[A-Za-z0-9.\-_]+|/pool|/pool/[A-Za-z0-9.\-_]+(?:/[A-Za-z0-9.\-_]+){0,2}
    |/sdn|/sdn/controllers|/sdn/controllers/[A-Za-z0-9_\-]+|/sdn/dns|/sdn/dns/[A-Za-z0-9]+
    |/sdn/fabrics|/sdn/fabrics/[A-Za-z0-9]+|/sdn/ipams|/sdn/ipams/[A-Za-z0-9]+
    |/sdn/prefix-lists|/sdn/prefix-lists/[A-Za-z0-9]+|/sdn/route-maps|/sdn/route-maps/[A-Za-z0-9]+
    |/sdn/zones|/sdn/zones/[A-Za-z0-9.\-_]+|/sdn/zones/[A-Za-z0-9.\-_]+/[A-Za-z0-9.\-_]+
    |/sdn/zones/[A-Za-z0-9.\-_]+/[A-Za-z0-9.\-_]+/[1-9][0-9]{0,3}
    |/storage|/storage/[A-Za-z0-9.\-_]+|/vms|/vms/[1-9][0-9]{2,}
    |/mapping|/mapping/[A-Za-z0-9.\-_]+|/mapping/[A-Za-z0-9.\-_]+/[A-Za-z0-9.\-_]+
)$""", re.X | re.S)


class Identity:
    def __init__(self, userid, tokenid=None, via="api", superuser=False):
        self.userid = userid
        self.tokenid = tokenid
        self.via = via
        self.superuser = superuser

    @property
    def authid(self):
        return f"{self.userid}!{self.tokenid}" if self.tokenid is not None else self.userid


def pvesh_root():
    """pve-manager PVE/CLI/pvesh.pm: setup_default_cli_env runs the handlers as root@pam."""
    return Identity("root@pam", via="pvesh", superuser=True)


def perm_denied(what=None):
    """PVE::Exception::raise_perm_exc."""
    return ApiError(403, f"Permission check failed ({what})" if what else "Permission check failed")


def normalize_path(path):
    if not path:
        return None
    path = re.sub(r"/+", "/", path)
    path = re.sub(r"/$", "", path) or "/"
    return path if path.startswith("/") else "/" + path


def split_tokenid(authid):
    match = TOKEN_RE.match(authid or "")
    return (match.group(1), match.group(2)) if match else (None, None)


def secret_hash(secret):
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class AccessControl:
    """user.cfg (users with tokens, custom roles, ACL tree) + priv/token.cfg (hashed)."""

    def __init__(self, node, start_token):
        self.node = node  # pools live in the node state
        self.users = {"root@pam": {"enable": 1, "expire": 0, "tokens": {}}}
        self.groups = {}  # /access/groups is not simulated: no group ever exists
        self.roles = {}  # custom roles: name -> set of privileges
        self.acl = {}  # normalized path -> {"users"|"groups"|"tokens": {ugid: {role: propagate}}}
        self.secrets = {}  # full token id -> sha256(secret); the secret itself is never stored
        authid, secret = start_token.rsplit("=", 1)
        userid, tokenid = authid.split("!", 1)
        self.start_authid = authid
        self.users.setdefault(userid, {"enable": 1, "expire": 0, "tokens": {}})
        self.users[userid]["tokens"][tokenid] = {"privsep": 0, "expire": 0}
        self.secrets[authid] = secret_hash(secret)

    # --- config -------------------------------------------------------------------

    def role_privs(self, role):
        if role in BUILTIN_ROLES:
            return BUILTIN_ROLES[role]
        return self.roles.get(role)

    def all_roles(self):
        roles = {name: set(privs) for name, privs in BUILTIN_ROLES.items()}
        roles.update(self.roles)
        return roles

    def token_info(self, authid):
        userid, tokenid = split_tokenid(authid)
        user = self.users.get(userid) if userid else None
        return user["tokens"].get(tokenid) if user else None

    def snapshot(self):
        return {
            "users": {u: dict(d, tokens={t: dict(i) for t, i in d["tokens"].items()})
                      for u, d in sorted(self.users.items())},
            "roles": {r: sorted(p) for r, p in sorted(self.roles.items())},
            "acl": self.acl_list(),
            "token_secrets": "sha256 only, not written",
        }

    def acl_list(self):
        entries = []
        for path in sorted(self.acl):
            for kind in ("user", "group", "token"):
                for ugid, roles in sorted(self.acl[path].get(kind + "s", {}).items()):
                    if kind == "token" and self.token_info(ugid) is None:
                        continue  # parse_user_config: "ignore invalid acl token"
                    for role, propagate in sorted(roles.items()):
                        entries.append({"path": path, "type": kind, "ugid": ugid, "roleid": role,
                                        "propagate": propagate})
        return entries

    def delete_user_acl(self, userid):
        for node in self.acl.values():
            node.get("users", {}).pop(userid, None)

    # --- authentication (AccessControl::verify_token) --------------------------------

    def verify_token(self, token):
        """The auth id of a valid `user@realm!id=secret`, else an ApiError(401)."""
        match = re.match(r"^(.*)=(.*)$", token, re.S)
        if not match:
            raise ApiError(401, "Authentication failed!")
        authid, secret = match.group(1), match.group(2)
        userid, tokenid = split_tokenid(authid)
        user = self.users.get(userid) if userid else None
        info = user["tokens"].get(tokenid) if user else None
        if user is None or not user.get("enable") or (user.get("expire") and user["expire"] < time.time()) \
                or info is None or (info.get("expire") and info["expire"] < time.time()) \
                or self.secrets.get(authid) != secret_hash(secret):
            raise ApiError(401, "Authentication failed!")
        return userid, tokenid

    # --- privileges (AccessControl::roles, RPCEnvironment::permissions) ----------------

    def _user_groups(self, ugid):
        return [g for g, data in self.groups.items() if ugid in data.get("users", ())]

    def roles_on(self, ugid, path):
        """AccessControl::roles for a user or a privsep token id: {role: propagate}."""
        roles = {}
        parts = [""] if path == "/" else path.split("/")
        current = ""
        for index, part in enumerate(parts):
            final = index == len(parts) - 1
            current = "/" if part == "" and index == 0 else (current.rstrip("/") + "/" + part)
            node = self.acl.get(current, {})
            new = None
            for kind in ("tokens", "users"):
                entries = node.get(kind, {}).get(ugid)
                if kind == "tokens" and entries and self.token_info(ugid) is None:
                    entries = None
                if entries:
                    picked = {r: p for r, p in entries.items() if final or p}
                    if picked:
                        new = picked
                        break
            if new is None:
                picked = {}
                for group in self._user_groups(ugid):
                    for role, prop in node.get("groups", {}).get(group, {}).items():
                        if final or prop:
                            picked[role] = prop
                new = picked or None
            if new is not None:
                roles = new
        if "NoAccess" in roles:
            return {"NoAccess": roles["NoAccess"]}
        return roles

    def _pool_roles(self, ugid, path):
        roles = {}
        for poolid, pool in self.node.pools.items():
            members = [f"/vms/{vmid}" for vmid in pool["vms"]] + [f"/storage/{sid}" for sid in pool["storage"]]
            if path in members:
                for role in self.roles_on(ugid, f"/pool/{poolid}"):
                    roles[role] = 1
        return roles

    def _privs_of(self, ugid, path):
        roles = self.roles_on(ugid, path)
        pool_roles = self._pool_roles(ugid, path)
        if pool_roles and "NoAccess" not in roles:
            if "NoAccess" in pool_roles:
                roles = {"NoAccess": 0}
            else:
                for role in pool_roles:
                    roles.setdefault(role, 0)  # pool-derived roles never propagate
        privs = {}
        for role, propagate in roles.items():
            for priv in self.role_privs(role) or ():
                privs[priv] = privs.get(priv, 0) or propagate
        return privs

    def permissions(self, authid, path):
        """RPCEnvironment::permissions: {priv: propagate} of `authid` on `path`."""
        if authid == "root@pam":
            return {p: 1 for p in BUILTIN_ROLES["Administrator"]}
        userid, tokenid = split_tokenid(authid)
        if userid:
            info = self.token_info(authid)
            if info is None:
                return {}
            user_privs = self.permissions(userid, path)
            if not info.get("privsep"):
                return user_privs
            token_privs = self._privs_of(authid, path)
            return {p: user_privs[p] and v for p, v in token_privs.items() if p in user_privs}
        if authid not in self.users:
            return {}
        return self._privs_of(authid, path)


class Perms:
    """The permission checks of one request by a non-superuser (RPCEnvironment)."""

    def __init__(self, access, authid):
        self.access = access
        self.authid = authid

    def check(self, path, privs, noerr=False):
        have = self.access.permissions(self.authid, path)
        for priv in privs:
            if priv not in VALID_PRIVS:
                raise die(f"invalid privilege '{priv}'")
            if priv not in have:
                if noerr:
                    return False
                raise perm_denied(f"{path}, {priv}")
        return True

    def check_any(self, path, privs, noerr=False):
        have = self.access.permissions(self.authid, path)
        if any(priv in have for priv in privs):
            return True
        if noerr:
            return False
        raise perm_denied(f"{path}, " + "|".join(privs))

    def check_full(self, path, privs, any_=False, noerr=False):
        return self.check_any(path, privs, noerr) if any_ else self.check(path, privs, noerr)

    def check_vm_perm(self, vmid, pool, privs, any_=False, noerr=False):
        if pool and self.check_full(f"/pool/{pool}", privs, any_, True):
            return True
        return self.check_full(f"/vms/{vmid}", privs, any_, noerr)

    def check_sdn_bridge(self, zone, bridge, privs, noerr=False):
        path = f"/sdn/zones/{zone}/{bridge}"
        if self.check_any(path, privs, True):
            return True
        for acl_path in self.access.acl:
            if re.match(rf"^{re.escape(path)}/[^/]+$", acl_path) and self.check_any(acl_path, privs, True):
                return True
        if not noerr:
            self.check_any(path, privs)
        return False

    def check_perm_modify(self, path, noerr=False):
        if not path:
            return self.check("/access", ["Permissions.Modify"], noerr)
        privs = ["Permissions.Modify"]
        if re.match(r"^/storage/.+$", path):
            privs.append("Datastore.Allocate")
        elif re.match(r"^/vms/.+$", path):
            privs.append("VM.Allocate")
        elif re.match(r"^/pool/.+$", path):
            privs.append("Pool.Allocate")
        return self.check_any(path, privs, noerr)

    def owns(self, task_user):
        """Tasks.pm: a token owns its tasks; a user its own and its tokens'."""
        if task_user == self.authid:
            return True
        userid, _ = split_tokenid(task_user)
        return userid is not None and userid == self.authid

    # --- API permission expressions (exec_api2_perm_check) -------------------------------

    def check_api2_permissions(self, perm, params):
        if self.authid == "root@pam":
            return True
        if not perm:
            raise perm_denied("user != root@pam")
        if perm.get("user") == "all":
            return True
        if perm.get("check"):
            return self.exec_check(perm["check"], params)
        raise perm_denied()

    def exec_check(self, check, params, noerr=False):
        test = check[0]
        if test == "and":
            for sub in check[1:]:
                self.exec_check(sub, params)
            return True
        if test == "or":
            for sub in check[1:]:
                if self.exec_check(sub, params, True):
                    return True
            if noerr:
                return False
            raise perm_denied()
        if test == "perm":
            tmplpath, privs = check[1], check[2]
            options = dict(zip(check[3::2], check[4::2]))
            require = options.get("require_param")
            if require and params.get(require) is None:
                if noerr:
                    return False
                raise perm_denied()
            path = normalize_path(re.sub(r"\{(\w+)\}", lambda m: str(params.get(m.group(1), "")), tmplpath))
            return self.check_full(path, privs, bool(options.get("any")), noerr)
        if test == "userid-group":
            return self._userid_group(check, params, noerr)
        if test == "userid-param":
            userid = str(params.get("userid") or "")
            if not re.match(rf"^{USER_RE}$", userid):
                raise die(f"value '{userid}' does not look like a valid user name")
            if check[1] == "self":
                if userid not in self.access.users:
                    if noerr:
                        return False
                    raise die(f"no such user ('{userid}')")
                if self.authid == userid:
                    return True
                if noerr:
                    return False
                raise perm_denied()
            realm = userid.rsplit("@", 1)[1]
            return self.check(f"/access/realm/{realm}", ["Realm.AllocateUser"], noerr)
        if test == "perm-modify":
            path = normalize_path(re.sub(r"\{(\w+)\}", lambda m: str(params.get(m.group(1), "")), check[1]))
            if path is None:
                return False
            return self.check_perm_modify(path, noerr)
        raise die("unknown permission test")

    def _userid_group(self, check, params, noerr):
        privs = check[1]
        options = dict(zip(check[2::2], check[3::2]))
        userid = params.get("userid")
        check_existing = options.get("groups_param") != "create"
        if check_existing:
            if userid not in self.access.users:
                if noerr:
                    return False
                raise die(f"no such user ('{userid}')")
        if not self.check_any("/access/groups", privs, True):
            groups = {g for g in self.access.groups if self.check_any(f"/access/groups/{g}", privs, True)}
            if options.get("groups_param"):
                wanted = [g for g in re.split(r"[,;\s]+", params.get("groups") or "") if g]
                if not wanted:
                    raise perm_denied("/access/groups, " + "|".join(privs))
                for group in wanted:
                    if group not in groups:
                        raise perm_denied(f"/access/groups/{group}, " + "|".join(privs))
            if check_existing:
                allowed = {u for g in groups for u in self.access.groups[g].get("users", ())}
                if userid not in allowed:
                    if noerr:
                        return False
                    raise perm_denied()
        return True


def new_secret():
    """PVE::TokenConfig::generate_token: a fresh UUID."""
    return str(uuid.uuid4())


__all__ = ["AccessControl", "Identity", "Perms", "VALID_PRIVS", "BUILTIN_ROLES", "ACL_PATH_RE",
           "normalize_path", "split_tokenid", "perm_denied", "pvesh_root", "new_secret", "param_error"]
