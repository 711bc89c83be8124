"""The /access endpoints: users, API tokens, roles, ACLs (pve-access-control at 5ccd07d9,
src/PVE/API2/User.pm, Role.pm, ACL.pm). Errors inside PVE's `lock_user_config` get its
prefix (`create user failed: ...`); a parameter exception raised there is stringified
into that plain `die` (so it is a 500 with `400 Parameter verification failed.` inside).
"""

from .access import ACL_PATH_RE, BUILTIN_ROLES, new_secret, normalize_path, secret_hash, split_tokenid
from .perlish import split_list
from .state import ApiError, die, param_error

USER_PROPS = ("enable", "expire", "firstname", "lastname", "email", "comment", "keys")


def locked(prefix, err):
    """lock_user_config: `die "$errmsg: $err"` (a PVE::Exception is stringified)."""
    text = err.message
    if err.status != 500:
        text = f"{err.status} {err.message}" + "".join(f"{k}: {v}\n" for k, v in (err.errors or {}).items())
    return die(f"{prefix}: {text}")


class AccessApi:
    def __init__(self, access):
        self.access = access
        self.routes = {
            ("GET", "/access/users"): self.user_index,
            ("POST", "/access/users"): self.user_create,
            ("GET", "/access/users/{userid}"): self.user_read,
            ("PUT", "/access/users/{userid}"): self.user_update,
            ("DELETE", "/access/users/{userid}"): self.user_delete,
            ("GET", "/access/users/{userid}/token"): self.token_index,
            ("GET", "/access/users/{userid}/token/{tokenid}"): self.token_read,
            ("POST", "/access/users/{userid}/token/{tokenid}"): self.token_create,
            ("PUT", "/access/users/{userid}/token/{tokenid}"): self.token_update,
            ("DELETE", "/access/users/{userid}/token/{tokenid}"): self.token_delete,
            ("GET", "/access/roles"): self.role_index,
            ("POST", "/access/roles"): self.role_create,
            ("GET", "/access/roles/{roleid}"): self.role_read,
            ("PUT", "/access/roles/{roleid}"): self.role_update,
            ("DELETE", "/access/roles/{roleid}"): self.role_delete,
            ("GET", "/access/acl"): self.acl_read,
            ("GET", "/access/permissions"): self.permissions,
            ("PUT", "/access/acl"): self.acl_update,
        }

    # --- users ----------------------------------------------------------------------

    def _user(self, userid):
        """check_user_exist: `no such user ('x')`."""
        user = self.access.users.get(userid)
        if user is None:
            raise die(f"no such user ('{userid}')")
        return user

    @staticmethod
    def _user_data(user, full):
        data = {k: user[k] for k in USER_PROPS if user.get(k) is not None}
        if full:
            data["groups"] = sorted(user.get("groups", []))
            data["tokens"] = {t: dict(info) for t, info in user["tokens"].items()}
        return data

    def user_index(self, p, ctx):
        """User.pm index: everyone sees their own user; others need User.Modify or Sys.Audit
        on /access/groups (or a group of the user). A token is not its user here."""
        authid = ctx.identity.authid
        can_mod = ctx.perms is None or ctx.perms.check_any("/access/groups", ["User.Modify", "Sys.Audit"], True)
        result = []
        for userid, user in sorted(self.access.users.items()):
            if not (can_mod or userid == authid):
                continue
            entry = self._user_data(user, p.get("full") == "1")
            if "enabled" in p and bool(entry.get("enable")) != (p["enabled"] == "1"):
                continue
            if "groups" in entry:
                entry["groups"] = ",".join(entry["groups"])
            if "tokens" in entry:
                entry["tokens"] = [dict(info, tokenid=t) for t, info in sorted(entry["tokens"].items())]
            realm = userid.rsplit("@", 1)[1]
            if realm in ("pam", "pve"):
                entry["realm-type"] = realm
            entry["userid"] = userid
            result.append(entry)
        return result

    def user_create(self, p, ctx):
        userid = p["userid"]
        try:
            if userid in self.access.users:
                raise die(f"user '{userid}' already exists")
            for group in split_list(p.get("groups")):
                if group not in self.access.groups:
                    raise die(f"no such group '{group}'")
        except ApiError as err:
            raise locked("create user failed", err) from None
        user = {"enable": int(p.get("enable", 1)), "tokens": {}}
        if p.get("expire") and p["expire"] != "0":
            user["expire"] = int(p["expire"])
        for key in ("firstname", "lastname", "email", "comment", "keys"):
            if p.get(key):
                user[key] = p[key]
        self.access.users[userid] = user  # a password is accepted but not kept
        return None

    def user_read(self, p, ctx):
        return self._user_data(self._user(p["userid"]), True)

    def user_update(self, p, ctx):
        try:
            user = self._user(p["userid"])
            for group in split_list(p.get("groups")):
                if group not in self.access.groups:
                    raise die(f"no such group '{group}'")
        except ApiError as err:
            raise locked("update user failed", err) from None
        for key in ("enable", "expire"):
            if key in p:
                user[key] = int(p[key])
        for key in ("firstname", "lastname", "email", "comment", "keys"):
            if key in p:
                user[key] = p[key]
        return None

    def user_delete(self, p, ctx):
        """delete_user: the user, its tokens (and so their ACL entries) and its ACL entries;
        an unknown user is no error."""
        userid = p["userid"]
        user = self.access.users.pop(userid, None)
        for tokenid in (user or {}).get("tokens", {}):
            self.access.secrets.pop(f"{userid}!{tokenid}", None)
        self.access.delete_user_acl(userid)
        return None

    # --- tokens ------------------------------------------------------------------------

    def _token(self, userid, tokenid):
        """check_token_exist: `no such token 'x' for user 'y'`."""
        user = self._user(userid)
        if tokenid not in user["tokens"]:
            raise die(f"no such token '{tokenid}' for user '{userid}'")
        return user["tokens"][tokenid]

    def token_index(self, p, ctx):
        user = self._user(p["userid"])
        return [dict(info, tokenid=t) for t, info in sorted(user["tokens"].items())]

    def token_read(self, p, ctx):
        return dict(self._token(p["userid"], p["tokenid"]))

    def token_create(self, p, ctx):
        userid, tokenid = p["userid"], p["tokenid"]
        user = self._user(userid)
        if tokenid in user["tokens"]:
            raise param_error({"tokenid": "Token already exists."})
        full = f"{userid}!{tokenid}"
        secret = new_secret()
        token = {"privsep": int(p.get("privsep", 1))}
        if "expire" in p:
            token["expire"] = int(p["expire"])
        if p.get("comment"):
            token["comment"] = p["comment"]
        user["tokens"][tokenid] = token
        self.access.secrets[full] = secret_hash(secret)
        return {"info": dict(token), "value": secret, "full-tokenid": full}

    def token_update(self, p, ctx):
        userid, tokenid = p["userid"], p["tokenid"]
        token = self._token(userid, tokenid)
        deletes = split_list(p.get("delete"))
        for key in deletes:
            if key != "comment":
                raise locked("updating token info failed", param_error({"delete": f"unknown option '{key}'"}))
        for key in ("privsep", "expire"):
            if key in p:
                token[key] = int(p[key])
        if "comment" in p:
            token["comment"] = p["comment"]
        if not token.get("comment"):
            token.pop("comment", None)
        for key in deletes:
            token.pop(key, None)
        result = dict(token)
        if p.get("regenerate") == "1":
            secret = new_secret()
            self.access.secrets[f"{userid}!{tokenid}"] = secret_hash(secret)
            result.update({"value": secret, "full-tokenid": f"{userid}!{tokenid}"})
        return result

    def token_delete(self, p, ctx):
        userid, tokenid = p["userid"], p["tokenid"]
        self._token(userid, tokenid)
        del self.access.users[userid]["tokens"][tokenid]
        self.access.secrets.pop(f"{userid}!{tokenid}", None)
        return None

    # --- roles ----------------------------------------------------------------------------

    def role_index(self, p, ctx):
        return [{"roleid": role, "privs": ",".join(sorted(privs)), "special": int(role in BUILTIN_ROLES)}
                for role, privs in sorted(self.access.all_roles().items())]

    def _add_privs(self, role, privs):
        """add_role_privs (the schema's pve-priv-list check already ran)."""
        for priv in split_list(privs):
            self.access.roles[role].add(priv)

    def role_create(self, p, ctx):
        role = p["roleid"]
        if role.upper().startswith("PVE"):
            raise param_error({"roleid": "cannot use role ID starting with the (case-insensitive) 'PVE' namespace"})
        if role in self.access.all_roles():
            raise die(f"create role failed: role '{role}' already exists")
        self.access.roles[role] = set()
        self._add_privs(role, p.get("privs"))
        return None

    def role_read(self, p, ctx):
        privs = self.access.role_privs(p["roleid"])
        if privs is None:
            raise die(f"role '{p['roleid']}' does not exist")
        return {priv: 1 for priv in sorted(privs)}

    def role_update(self, p, ctx):
        role = p["roleid"]
        if role in BUILTIN_ROLES:
            raise die(f"auto-generated role '{role}' cannot be modified")
        if role not in self.access.roles:
            raise die(f"update role failed: role '{role}' does not exist")
        if p.get("append") != "1":
            self.access.roles[role] = set()
        self._add_privs(role, p.get("privs"))
        return None

    def role_delete(self, p, ctx):
        role = p["roleid"]
        if role in BUILTIN_ROLES:
            raise die(f"auto-generated role '{role}' cannot be deleted")
        if role not in self.access.roles:
            raise die(f"delete role failed: role '{role}' does not exist")
        del self.access.roles[role]
        for node in self.access.acl.values():  # parse_user_config: "ignore invalid acl role"
            for entries in node.values():
                for roles in entries.values():
                    roles.pop(role, None)
        return None

    # --- effective permissions ---------------------------------------------------------

    def permissions(self, p, ctx):
        """AccessControl.pm (API2) `permissions` + RPCEnvironment get_effective_permissions:
        {path: {priv: propagate}} for the caller (or `userid`: own tokens, else Sys.Audit
        on /access), over the top-level paths, every ACL path and the pool members."""
        authid = ctx.identity.authid
        userid = p.get("userid", authid)
        owner, _ = split_tokenid(userid)
        if userid != authid and owner != authid and ctx.perms is not None:
            ctx.perms.check("/access", ["Sys.Audit"])
        if p.get("path"):
            return {p["path"]: self.access.permissions(userid, p["path"])}
        paths = {"/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"}
        paths.update(entry["path"] for entry in self.access.acl_list())
        for pool in self.access.node.pools.values():
            paths.update(f"/vms/{vmid}" for vmid in pool["vms"])
            paths.update(f"/storage/{sid}" for sid in pool["storage"])
        result = {}
        for path in sorted(paths):
            privs = self.access.permissions(userid, path)
            if privs:
                result[path] = {priv: int(bool(v)) for priv, v in sorted(privs.items())}
        return result

    # --- ACL ------------------------------------------------------------------------------

    def acl_read(self, p, ctx):
        """ACL.pm read_acl: entries on paths where the caller may modify permissions
        (or everything with Sys.Audit on /access)."""
        audit = ctx.perms is None or ctx.perms.check("/access", ["Sys.Audit"], True)
        return [entry for entry in self.access.acl_list()
                if audit or ctx.perms.check_perm_modify(entry["path"], True)]

    def acl_update(self, p, ctx):
        if not (p.get("users") or p.get("groups") or p.get("tokens")):
            raise param_error({k: "either 'users', 'groups' or 'tokens' is required." for k in
                               ("users", "groups", "tokens")})
        path = normalize_path(p["path"])
        if not path or (p.get("delete") != "1" and not ACL_PATH_RE.match(path)):
            raise param_error({"path": f"invalid ACL path '{p['path']}'"})
        delete = p.get("delete") == "1"
        propagate = int(p.get("propagate", 1))
        own = None if ctx.perms is None else self.access.permissions(ctx.identity.authid, path)
        changes = []
        try:
            for role in split_list(p["roles"]):
                privs = self.access.role_privs(role)
                if privs is None:
                    raise die(f"role '{role}' does not exist")
                if own is not None and "Permissions.Modify" not in own:
                    verb = "remove" if delete else "add"
                    for priv in sorted(privs):
                        if priv not in own:
                            raise param_error({"role": f"Cannot {verb} role '{role}' - requires "
                                                       "'Permissions.Modify' or superset of privileges."})
                        if propagate and own[priv] != propagate and not delete:
                            raise param_error({"role": f"Cannot {verb} role '{role}' with propagation - "
                                                       "requires 'Permissions.Modify' or propagated superset "
                                                       "of privileges."})
                    if role == "NoAccess":
                        raise param_error({"role": f"Cannot {verb} role '{role}' - requires 'Permissions.Modify'"})
                for group in split_list(p.get("groups")):
                    if group not in self.access.groups:
                        raise die(f"group '{group}' does not exist")
                    changes.append(("groups", group, role))
                for userid in split_list(p.get("users")):
                    if userid not in self.access.users:
                        raise die(f"user '{userid}' does not exist")
                    changes.append(("users", userid, role))
                for tokenid in split_list(p.get("tokens")):
                    userid, token = split_tokenid(tokenid)
                    if userid not in self.access.users:
                        raise die(f"no such user ('{userid}')")
                    if token not in self.access.users[userid]["tokens"]:
                        raise die(f"no such token '{token}' for user '{userid}'")
                    changes.append(("tokens", tokenid, role))
        except ApiError as err:
            raise locked("ACL update failed", err) from None
        node = self.access.acl.setdefault(path, {})
        for kind, ugid, role in changes:
            if delete:
                node.get(kind, {}).get(ugid, {}).pop(role, None)
            else:
                node.setdefault(kind, {}).setdefault(ugid, {})[role] = propagate
        return None
