"""Who is calling: the authenticated identity of a request.

`Identity.authid` is what PVE calls the auth id (RPCEnvironment::get_user):
`user@realm` for a user (pvesh runs in-process as root@pam), or
`user@realm!tokenid` for an API token. The start token (`--token`) and
pvesh are superusers (no permission checks); see README.md.
"""


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
