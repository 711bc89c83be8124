//! Strings with consequences, as types. Every blueprint string that reaches
//! a command line, a URL, a Go template, a path on a machine or a Secret is
//! one of these in the model, and a value of one can only be made by its
//! `parse`: a conservative allow-list that refuses what the consumer could
//! read as something else (an option, a second line, a template, a path
//! outside its place), with the reason in words a blueprint author reads.
//! `resolve` turns the blueprint's strings into them and reports a refusal
//! where it was written; a renderer never receives an unchecked string in
//! these places. `docs/blueprint-strings.md` lists every field and its rule.
//!
//! The predicates are pure and small, and return the reason a value is
//! refused, phrased to follow the field's name (`` `flux.branch` starts
//! with `-` … ``). They never echo a character a terminal would act on: a
//! newline or control character is named, not printed.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;

/// A string type made only by its check.
pub trait CheckedString: Sized {
    /// A value the rule accepts, for help texts; resolve also holds it in
    /// place of a refused value while it goes on checking (the model is
    /// never handed out then).
    const EXAMPLE: &'static str;
    /// How a value is written, for a diagnostic's help.
    const HELP: &'static str;
    /// The value, or why it is refused.
    fn parse(raw: &str) -> Result<Self, String>;
    /// [`CheckedString::EXAMPLE`] as a value.
    fn example() -> Self;
}

macro_rules! checked_string {
    ($(
        $(#[$doc:meta])*
        $name:ident: $check:path, example $example:literal, help $help:literal;
    )*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value, or why it is refused.
            pub fn parse(raw: &str) -> Result<Self, String> {
                $check(raw)?;
                Ok($name(raw.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl CheckedString for $name {
            const EXAMPLE: &'static str = $example;
            const HELP: &'static str = $help;

            fn parse(raw: &str) -> Result<Self, String> {
                $name::parse(raw)
            }

            fn example() -> Self {
                // A unit test proves every example passes its own check.
                $name($example.to_string())
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    )*

        /// Every checked type's example, by type name (for the test that
        /// each passes its own check).
        #[cfg(test)]
        const EXAMPLES: &[(&str, &str, fn(&str) -> Result<(), String>)] = &[$(
            (stringify!($name), $example, |raw| $name::parse(raw).map(|_| ())),
        )*];
    };
}

checked_string! {
    /// `operator.email`: the ACME contact in cert-manager's ClusterIssuer
    /// and Teleport's config.
    EmailAddress: check_email, example "ops@example.org",
        help "write `name@example.org`: letters, digits and `._%+-` before the `@`, a DNS name after it";
    /// `host.disk_storage`, `host.file_storage`: a Proxmox storage ID, in
    /// `qm`/`pvesm` command lines and API paths.
    StorageId: check_storage_id, example "local",
        help "write the storage ID as `pvesm status` lists it: a letter, then letters, digits and `-_.`";
    /// `host.ssh`: the destination the operator's `ssh` runs the host setup
    /// on, and jumps through to reach the VMs.
    SshTarget: check_ssh_target, example "root@203.0.113.10",
        help "write `user@host` (e.g. `root@203.0.113.10`), or remove `ssh` for `root@` the public address";
    /// `host.api`, `platform.backups.endpoint`: an `https://` URL with a
    /// host and nothing else a shell, template or parser could act on.
    HttpsUrl: check_https_url, example "https://203.0.113.10:8006",
        help "write `https://HOST[:PORT][/PATH]` with letters, digits and `-._~:/` only, e.g. `https://s3.fr-par.scw.cloud`";
    /// `debian.mirror`, `teleport.app[].uri`: an `http://` or `https://`
    /// URL with a host and nothing else a shell, template or parser could
    /// act on.
    HttpUrl: check_http_url, example "http://deb.debian.org/debian",
        help "write `http(s)://HOST[:PORT][/PATH]` with letters, digits and `-._~:/` only, e.g. `http://deb.debian.org/debian`";
    /// `bridge[].name`: a Linux interface name, in iptables rules, scripts
    /// and Proxmox's network config.
    BridgeName: check_bridge_name, example "vmbr0",
        help "write a Linux interface name: a letter or digit, then letters, digits and `_-.`; at most 15 (e.g. `vmbr1`)";
    /// `cpu`: a Proxmox CPU type, in `qm create --cpu` and the API.
    CpuType: check_cpu_type, example "host",
        help "write a Proxmox CPU type such as `host` or `x86-64-v2-AES`";
    /// `flux.url`: the repository Flux clones over SSH.
    GitUrl: check_git_url, example "ssh://git@github.com/org/platform.git",
        help "write it as `ssh://git@github.com/ORG/REPO.git`";
    /// `flux.branch`: the branch Flux syncs (`refs/heads/<branch>`).
    GitBranch: check_git_branch, example "main",
        help "write a branch name such as `main` or `release/2026`: letters, digits and `._/-`, no `..`, not starting with `-`";
    /// `flux.path`: the directory of the platform repository Flux syncs and
    /// `platform publish` writes.
    RepoPath: check_repo_path, example "clusters/prod",
        help "write a directory inside the repository such as `clusters/prod`: `/`-separated names of letters, digits and `._-`, none starting with `.` or `-`";
    /// `flux.known_hosts[]`: one host key line of the Secret Flux trusts.
    KnownHost: check_known_host, example "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        help "paste one line of `ssh-keyscan HOST` output per entry: `HOST KEYTYPE KEY`";
    /// `platform.storage.dataset`: the ZFS dataset `zfs create` and
    /// democratic-csi work under on the host.
    ZfsDataset: check_zfs_dataset, example "rpool/k8s",
        help "write `POOL/NAME` such as `rpool/k8s`: names of letters, digits and `_-.:`, each starting with a letter or digit";
    /// `platform.backups.region`: the S3 region, a literal in the External
    /// Secrets template of the backup credentials.
    S3Region: check_s3_region, example "fr-par",
        help "write the region as the provider names it, e.g. `fr-par` or `us-east-1`: lowercase letters, digits and `-`";
    /// `artifacts.bucket`: the artifact store's bucket, in the path of
    /// every request and of the URLs Proxmox downloads from.
    S3Bucket: check_s3_bucket, example "waddle-artifacts",
        help "write the bucket's name: 3 to 63 lowercase letters, digits, `.` and `-`, a letter or digit first and last";
    /// `teleport.github.client_id`: the GitHub OAuth app's client ID.
    OAuthClientId: check_oauth_client_id, example "Ov23liExampleApp",
        help "copy the client ID from the GitHub OAuth app's settings: letters, digits and `._-`";
    /// `teleport.github.org`: the GitHub organisation the connector admits.
    GithubOrg: check_github_org, example "example-org",
        help "write the organisation's login: letters, digits and single `-`, not first or last";
    /// `teleport.kubernetes.kubeconfig`: a file `waddlec cluster bootstrap`
    /// writes as root on the Teleport VM.
    TeleportDataPath: check_teleport_data_path, example "/var/lib/teleport/kubeconfig.yaml",
        help "write a file under `/var/lib/teleport/`, e.g. `/var/lib/teleport/kubeconfig.yaml`";
    /// `talos.age.recipients[]`: an age X25519 recipient the Talos store is
    /// encrypted to. Its checksum is checked by the age library when the
    /// store is written (`waddlec`'s `secrets::age_store`).
    AgeRecipient: check_age_recipient, example "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        help "paste the line `age-keygen -y IDENTITY_FILE` prints: `age1` and 58 lowercase letters and digits";
}

/// Why a recipient that is really an identity is refused; the value is
/// secret and never quoted.
pub const AGE_IDENTITY_REFUSAL: &str = "is an age identity (`AGE-SECRET-KEY-1…`), which is \
     secret, not a recipient: it is in the blueprint's history now, so make a new identity \
     (`age-keygen`) and write its recipient (`age-keygen -y`) here";

/// Whether `value` looks like an age identity (a secret key), in any case.
pub fn is_age_identity(value: &str) -> bool {
    value
        .get(..15)
        .is_some_and(|p| p.eq_ignore_ascii_case("AGE-SECRET-KEY-"))
}

/// The bech32 alphabet (BIP 173), which age's recipients are written in.
const BECH32_CHARSET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// `age1` and the 58 bech32 characters of a 32-byte X25519 key and its
/// checksum.
pub fn check_age_recipient(recipient: &str) -> Result<(), String> {
    if is_age_identity(recipient) {
        return Err(AGE_IDENTITY_REFUSAL.into());
    }
    let Some(data) = recipient.strip_prefix("age1") else {
        return Err(format!(
            "`{recipient}` is not an age X25519 recipient, which starts with `age1` (SSH and \
             plugin recipients are not supported)"
        ));
    };
    if let Some(c) = first_refused(data, |c| BECH32_CHARSET.contains(c)) {
        return Err(format!(
            "contains {c}; an age recipient is `age1` and lowercase bech32 letters and digits"
        ));
    }
    if data.len() != 58 {
        return Err(format!(
            "has {} characters after `age1`, where an X25519 recipient has 58",
            data.len()
        ));
    }
    Ok(())
}

/// Teleport's data directory on its VM, where the kubeconfig `cluster
/// bootstrap` installs must live.
pub const TELEPORT_DATA_DIR: &str = "/var/lib/teleport";

/// The key types of OpenSSH public keys a user may log in with.
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// The key types an SSH server's host key has.
const HOST_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

/// A character as a message names it: invisible ones in words, the rest in
/// backticks.
fn describe(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        '`' => "a backtick".into(),
        c if c.is_control() => format!("a control character (U+{:04X})", u32::from(c)),
        c if c.is_whitespace() => format!("a space character (U+{:04X})", u32::from(c)),
        c if !c.is_ascii() => format!("the non-ASCII character U+{:04X}", u32::from(c)),
        c => format!("`{c}`"),
    }
}

/// The first character of `text` that `allowed` refuses, described.
fn first_refused(text: &str, allowed: impl Fn(char) -> bool) -> Option<String> {
    text.chars().find(|c| !allowed(*c)).map(describe)
}

/// Whether `text` can be echoed in a message: printable ASCII only.
fn printable(text: &str) -> bool {
    text.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

/// Checks one DNS label (letters, digits, hyphens; 1–63; no leading or
/// trailing hyphen).
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("has an empty label (two dots in a row, or a leading/trailing dot)".into());
    }
    if label.len() > 63 {
        return Err(format!("label `{label}` is longer than 63 characters"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        if !printable(label) {
            return Err(format!(
                "contains {}; only letters, digits and `-` are allowed",
                describe(c)
            ));
        }
        return Err(format!(
            "label `{label}` contains `{c}`; only letters, digits and `-` are allowed"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label `{label}` starts or ends with `-`"));
    }
    Ok(())
}

/// Checks a fully written DNS name (no wildcard, no trailing dot).
pub fn check_dns_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    name.split('.').try_for_each(check_label)
}

/// `name@example.org`: a conservative local part (no quotes, `$`,
/// backticks, backslashes, braces or spaces) and a DNS name with a dot.
pub fn check_email(email: &str) -> Result<(), String> {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(match printable(email) {
            true => format!("`{email}` is not an e-mail address"),
            false => "is not an e-mail address".into(),
        });
    };
    if let Some(c) = first_refused(local, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
    }) {
        return Err(format!(
            "contains {c} before the `@`; write the part before it with letters, digits and `._%+-`"
        ));
    }
    if local.is_empty() || local.len() > 64 {
        return Err("has no name, or one longer than 64 characters, before the `@`".into());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(
            "has a `.` at the start or end of the name before the `@`, or two in a row".into(),
        );
    }
    if let Err(reason) = check_dns_name(domain) {
        return Err(format!("has no DNS name after the `@`: it {reason}"));
    }
    if !domain.contains('.') {
        return Err(format!(
            "has `{domain}` after the `@`, which is not a public domain (it has no dot)"
        ));
    }
    Ok(())
}

/// A Proxmox storage ID (`pve-storage-id`: a letter, then letters, digits
/// and `-_.`, ending in a letter or digit).
pub fn check_storage_id(id: &str) -> Result<(), String> {
    if let Some(c) = first_refused(id, |c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!(
            "contains {c}; a Proxmox storage ID is letters, digits and `-_.`"
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!(
            "`{id}` does not start with a letter, as a Proxmox storage ID does (a leading `-` would be read as an option)"
        ));
    }
    if id.len() < 2 || !id.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "`{id}` is not a Proxmox storage ID: at least two characters, ending in a letter or digit"
        ));
    }
    Ok(())
}

/// `user@host` or `host`, as `ssh` takes it: a portable user name, a host
/// name, address or ssh-config alias; nothing a shell would read, nothing
/// `ssh` would read as an option.
pub fn check_ssh_target(target: &str) -> Result<(), String> {
    if target
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | ';' | '$' | '`'))
    {
        return Err(match printable(target) {
            true => format!(
                "`{target}` is not an SSH destination (`user@host`): it contains a space or quote"
            ),
            false => "is not an SSH destination (`user@host`): it contains a space, newline or control character".into(),
        });
    }
    let (user, host) = match target.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, target),
    };
    if host.is_empty() {
        return Err(format!(
            "`{target}` names no host; write `user@host`, e.g. `root@203.0.113.10`"
        ));
    }
    if user.is_some_and(str::is_empty) {
        return Err(format!(
            "`{target}` has an empty user before `@`; write `user@host` or just `host`"
        ));
    }
    if host.starts_with('-') || target.starts_with('-') {
        return Err(format!(
            "`{target}` starts with `-`, which `ssh` would read as an option"
        ));
    }
    let name = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if let Some(c) = user.and_then(|user| first_refused(user, name)) {
        return Err(format!(
            "has {c} in its user name; write the user with letters, digits and `._-`"
        ));
    }
    if let Some(c) = first_refused(host, name) {
        return Err(format!(
            "has {c} in its host; write a host name, an IPv4 address or an ssh-config `Host` (letters, digits and `._-`)"
        ));
    }
    Ok(())
}

/// The characters a URL of the blueprint may hold: enough for a scheme,
/// `user@`, a host, a port and a path. No query, fragment, percent
/// escape, quote, `$`, brace, space or backslash: nothing a shell, a Go
/// template or a YAML reader could act on.
fn url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/@".contains(c)
}

/// A URL of one of `schemes` with a DNS or IPv4 host not starting with
/// `-`; `user@` only where `user_allowed`. The messages never repeat the
/// URL: it may carry a password.
fn check_url(raw: &str, schemes: &[&str], user_allowed: bool) -> Result<url::Url, String> {
    if let Some(c) = first_refused(raw, url_char) {
        return Err(format!(
            "contains {c}, which has no place in this URL (only letters, digits and `-._~:/@`)"
        ));
    }
    let names = schemes
        .iter()
        .map(|s| format!("`{s}://`"))
        .collect::<Vec<_>>()
        .join(" or ");
    let url = url::Url::parse(raw).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            format!("is not a URL starting with {names}")
        }
        e => format!("is not a URL starting with {names} ({e})"),
    })?;
    if !schemes.contains(&url.scheme()) || !raw.contains("://") {
        return Err(format!("is not a URL starting with {names}"));
    }
    if url.password().is_some() || (!user_allowed && !url.username().is_empty()) {
        return Err(
            "carries a user name or password; credentials belong in a secret, never in a URL"
                .into(),
        );
    }
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err("names no host".into());
    }
    if host.starts_with('-') {
        return Err(format!(
            "has the host `{host}`, starting with `-`, which a program would read as an option"
        ));
    }
    if host.parse::<std::net::Ipv4Addr>().is_err() {
        check_dns_name(host).map_err(|reason| format!("has a host that {reason}"))?;
    }
    Ok(url)
}

pub fn check_https_url(raw: &str) -> Result<(), String> {
    check_url(raw, &["https"], false).map(|_| ())
}

pub fn check_http_url(raw: &str) -> Result<(), String> {
    check_url(raw, &["http", "https"], false).map(|_| ())
}

/// `ssh://[user@]host[:port]/path`: the user a plain name (`git`), a path
/// after the host.
pub fn check_git_url(raw: &str) -> Result<(), String> {
    let url = check_url(raw, &["ssh"], true)?;
    let user = url.username();
    if user.starts_with('-')
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "has the user `{user}`, which is not a plain name such as `git`"
        ));
    }
    if url.path().trim_matches('/').is_empty() {
        return Err("names no repository after the host".into());
    }
    Ok(())
}

/// A branch name git accepts (`git check-ref-format --branch`), narrowed
/// to letters, digits and `._/-`.
pub fn check_git_branch(branch: &str) -> Result<(), String> {
    if let Some(c) = first_refused(branch, |c| c.is_ascii_alphanumeric() || "._/-".contains(c)) {
        return Err(format!(
            "contains {c}; a branch name here is letters, digits and `._/-`"
        ));
    }
    if branch.is_empty() {
        return Err("is empty".into());
    }
    if branch.starts_with('-') {
        return Err(format!(
            "`{branch}` starts with `-`, which git would read as an option"
        ));
    }
    if branch.contains("..") {
        return Err(format!(
            "`{branch}` contains `..`, which git refuses in a branch name"
        ));
    }
    if branch.split('/').any(str::is_empty) {
        return Err(format!(
            "`{branch}` has an empty part (`//`, or a `/` at the start or end)"
        ));
    }
    if let Some(part) = branch
        .split('/')
        .find(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err(format!(
            "`{branch}` has the part `{part}`, which git refuses (a part may not start with `.` or end in `.lock`)"
        ));
    }
    if branch.ends_with('.') {
        return Err(format!("`{branch}` ends with `.`, which git refuses"));
    }
    Ok(())
}

/// A relative directory of names (`clusters/prod`): no `.`/`..`, no empty
/// part, no part starting with `.` (`.github`, `.git` are for git and CI,
/// never for the platform tree) or `-`.
pub fn check_repo_path(path: &str) -> Result<(), String> {
    if let Some(c) = first_refused(path, |c| c.is_ascii_alphanumeric() || "._/-".contains(c)) {
        return Err(format!(
            "contains {c}; a path here is `/`-separated names of letters, digits and `._-`"
        ));
    }
    if path.is_empty() {
        return Err("is empty".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "`{path}` is absolute; it is a directory inside the repository, like `clusters/prod`"
        ));
    }
    if path.split('/').any(str::is_empty) {
        return Err(format!(
            "`{path}` has an empty part (`//`, or a trailing `/`)"
        ));
    }
    if let Some(part) = path.split('/').find(|p| *p == "." || *p == "..") {
        return Err(format!(
            "`{path}` contains `{part}`; it names a directory inside the repository, never a way out of it"
        ));
    }
    if let Some(part) = path.split('/').find(|p| p.starts_with('.')) {
        return Err(format!(
            "`{path}` goes into `{part}`: hidden directories (`.github`, `.git`) belong to git and CI, and `platform publish` would rewrite them"
        ));
    }
    if let Some(part) = path.split('/').find(|p| p.starts_with('-')) {
        return Err(format!(
            "`{path}` has the part `{part}`, starting with `-`, which git would read as an option"
        ));
    }
    Ok(())
}

/// One `known_hosts` line as `ssh-keyscan` prints it: `HOSTS KEYTYPE KEY`,
/// one line, no marker (`@cert-authority`, `@revoked`), hosts without
/// wildcards or negations.
pub fn check_known_host(line: &str) -> Result<(), String> {
    if let Some(c) = first_refused(line, |c| c.is_ascii_graphic() || c == ' ') {
        return Err(format!(
            "contains {c}; an entry is one line of `ssh-keyscan` output (write one host key per entry)"
        ));
    }
    if line.trim_start().starts_with('@') {
        return Err(
            "starts with a marker (`@cert-authority`, `@revoked`); only plain host keys are accepted, one per entry"
                .into(),
        );
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [hosts, kind, key] = fields.as_slice() else {
        return Err(
            "is not `HOSTS KEYTYPE KEY`, the three fields `ssh-keyscan HOST` prints".into(),
        );
    };
    let base64 = |text: &str| {
        !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
    };
    for host in hosts.split(',') {
        let hashed = host
            .strip_prefix("|1|")
            .and_then(|rest| rest.split_once('|'))
            .is_some_and(|(salt, hash)| base64(salt) && base64(hash));
        let plain = host
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("]:"))
            .map_or(host, |(name, port)| {
                if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) {
                    name
                } else {
                    ""
                }
            });
        let named = !plain.is_empty()
            && !plain.starts_with('-')
            && plain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        if !(hashed || named) {
            return Err(format!(
                "has the host `{host}`, which is not a host name, address or `[host]:port` (wildcards and negations are not accepted)"
            ));
        }
    }
    if !HOST_KEY_TYPES.contains(kind) {
        return Err(format!(
            "has the key type `{kind}`; a host key is one of {}",
            HOST_KEY_TYPES.join(", ")
        ));
    }
    if !key.starts_with("AAAA") || key.len() < 16 || !base64(key) {
        return Err("has no base64 key after the key type".into());
    }
    Ok(())
}

/// `rpool/k8s`: a ZFS dataset, each name starting with a letter or digit
/// (the pool's with a letter) so that `zfs` never reads one as an option.
pub fn check_zfs_dataset(dataset: &str) -> Result<(), String> {
    if let Some(c) = first_refused(dataset, |c| {
        c.is_ascii_alphanumeric() || "_-.:/".contains(c)
    }) {
        return Err(format!(
            "contains {c}; a ZFS dataset is `/`-separated names of letters, digits and `_-.:`"
        ));
    }
    if dataset.starts_with('/') || dataset.ends_with('/') {
        return Err(format!(
            "`{dataset}` starts or ends with `/`; a ZFS dataset is written `POOL/NAME`, like `rpool/k8s`"
        ));
    }
    if dataset.len() > 200 {
        return Err(
            "is longer than 200 characters; ZFS names end at 255 with the children added".into(),
        );
    }
    if dataset.split('/').any(str::is_empty) {
        return Err(format!("`{dataset}` has an empty name (`//`)"));
    }
    if !dataset.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!(
            "`{dataset}` does not start with a letter, as a ZFS pool name does"
        ));
    }
    if let Some(part) = dataset
        .split('/')
        .find(|p| !p.starts_with(|c: char| c.is_ascii_alphanumeric()))
    {
        return Err(format!(
            "`{dataset}` has the name `{part}`, which does not start with a letter or digit (`zfs` would read a leading `-` as an option)"
        ));
    }
    Ok(())
}

/// An S3 region: lowercase letters, digits and `-`, 1–63.
pub fn check_s3_region(region: &str) -> Result<(), String> {
    if let Some(c) = first_refused(region, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    }) {
        return Err(format!(
            "contains {c}; an S3 region is lowercase letters, digits and `-` (`fr-par`, `us-east-1`)"
        ));
    }
    if region.is_empty() || region.len() > 63 {
        return Err("is empty or longer than 63 characters".into());
    }
    if region.starts_with('-') || region.ends_with('-') {
        return Err(format!("`{region}` starts or ends with `-`"));
    }
    Ok(())
}

/// An S3 bucket name: 3–63 lowercase letters, digits, `.` and `-`, a
/// letter or digit first and last.
pub fn check_s3_bucket(bucket: &str) -> Result<(), String> {
    if let Some(c) = first_refused(bucket, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
    }) {
        return Err(format!(
            "contains {c}; a bucket name is lowercase letters, digits, `.` and `-`"
        ));
    }
    if bucket.len() < 3 || bucket.len() > 63 {
        return Err("is shorter than 3 or longer than 63 characters".into());
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge(bucket.chars().next()) || !edge(bucket.chars().last()) {
        return Err(format!(
            "`{bucket}` does not start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// An OAuth client ID: letters, digits and `._-`, starting with a letter
/// or digit.
pub fn check_oauth_client_id(id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = first_refused(id, |c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(format!(
            "contains {c}; a client ID is letters, digits and `._-`"
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) || id.len() > 100 {
        return Err(format!(
            "`{id}` is not a client ID: it starts with a letter or digit and has at most 100 characters"
        ));
    }
    Ok(())
}

/// A GitHub organisation login: letters, digits and single hyphens, not
/// first or last; at most 39.
pub fn check_github_org(org: &str) -> Result<(), String> {
    let ok = !org.is_empty()
        && org.len() <= 39
        && org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !org.starts_with('-')
        && !org.ends_with('-')
        && !org.contains("--");
    if ok {
        Ok(())
    } else if printable(org) {
        Err(format!("`{org}` is not a GitHub organisation name"))
    } else {
        Err("is not a GitHub organisation name".into())
    }
}

/// A file under Teleport's data directory on its VM: absolute, below
/// `/var/lib/teleport/`, names of letters, digits and `._-` not starting
/// with `.` or `-`. `cluster bootstrap` creates its directory (0700) and
/// replaces the file as root, so it must never name anything else.
pub fn check_teleport_data_path(path: &str) -> Result<(), String> {
    if let Some(c) = first_refused(path, |c| c.is_ascii_alphanumeric() || "/._-".contains(c)) {
        return Err(format!(
            "contains {c}; a path here is `/`-separated names of letters, digits and `._-`"
        ));
    }
    let Some(rest) = path
        .strip_prefix(TELEPORT_DATA_DIR)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return Err(format!(
            "`{path}` is not under `{TELEPORT_DATA_DIR}/`: `waddlec cluster bootstrap` writes this file as root, so it stays in Teleport's data directory"
        ));
    };
    if rest.is_empty() || rest.split('/').any(str::is_empty) {
        return Err(format!(
            "`{path}` has an empty part (`//` or a trailing `/`); name a file, e.g. `{TELEPORT_DATA_DIR}/kubeconfig.yaml`"
        ));
    }
    if let Some(part) = rest
        .split('/')
        .find(|p| p.starts_with('.') || p.starts_with('-'))
    {
        return Err(format!(
            "`{path}` has the part `{part}`; names start with a letter, digit or `_` (no `..`, no hidden files)"
        ));
    }
    Ok(())
}

/// A Linux interface name (`dev_valid_name`, narrowed): 1–15 letters,
/// digits and `_-.`, starting with a letter or digit.
pub fn check_bridge_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(match printable(name) {
            true => format!(
                "`{name}` is not a Linux interface name (at most 15 letters, digits, `_ - .`)"
            ),
            false => "is not a Linux interface name (at most 15 letters, digits, `_ - .`)".into(),
        });
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "`{name}` does not start with a letter or digit (`ip` and `iptables` would read a leading `-` as an option)"
        ));
    }
    Ok(())
}

/// A Proxmox CPU type (`host`, `x86-64-v2-AES`, `custom-NAME`).
pub fn check_cpu_type(cpu: &str) -> Result<(), String> {
    let ok = cpu.starts_with(|c: char| c.is_ascii_alphanumeric())
        && cpu
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else if printable(cpu) {
        Err(format!(
            "`{cpu}` is not a Proxmox CPU type such as `host` or `x86-64-v2-AES`"
        ))
    } else {
        Err("is not a Proxmox CPU type such as `host` or `x86-64-v2-AES`".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuses(check: fn(&str) -> Result<(), String>, values: &[&str]) {
        for value in values {
            let reason = check(value).expect_err(value);
            assert!(
                !reason.contains('\n') && !reason.contains('\r'),
                "the reason for {value:?} prints a line break: {reason}"
            );
        }
    }

    fn accepts(check: fn(&str) -> Result<(), String>, values: &[&str]) {
        for value in values {
            assert_eq!(check(value), Ok(()), "{value:?}");
        }
    }

    #[test]
    fn every_example_passes_its_own_check() {
        for (name, example, check) in EXAMPLES {
            assert_eq!(check(example), Ok(()), "{name}: {example}");
        }
    }

    /// The shapes resolve builds defaults in.
    #[test]
    fn defaults_pass_their_checks() {
        assert_eq!(check_https_url("https://203.0.113.10:8006"), Ok(()));
        assert_eq!(check_ssh_target("root@203.0.113.10"), Ok(()));
        assert_eq!(check_cpu_type("host"), Ok(()));
        assert_eq!(check_git_branch("main"), Ok(()));
        for cluster in ["waddle-cluster", "lab", "0prod", "Lab"] {
            assert_eq!(check_repo_path(&format!("clusters/{cluster}")), Ok(()));
        }
    }

    #[test]
    fn emails() {
        accepts(
            check_email,
            &[
                "ops@waddle.social",
                "first.last+acme@example.org",
                "a_b-c%d@x.example.org",
            ],
        );
        refuses(
            check_email,
            &[
                "ops",
                "@example.org",
                "ops@localhost",
                "ops@-x.org",
                "o\"ps@example.org",
                "o`id`@example.org",
                "$(id)@example.org",
                "o\\ps@example.org",
                "o ps@example.org",
                "ops\n@example.org",
                "ops@example.org\nX-Header: y",
                "{{.x}}@example.org",
                ".ops@example.org",
                "o..ps@example.org",
            ],
        );
    }

    #[test]
    fn storage_ids() {
        accepts(
            check_storage_id,
            &["local", "vmdata", "local-zfs", "ceph_pool.1"],
        );
        refuses(
            check_storage_id,
            &[
                "", "-local", "1local", "l", "local-", "lo cal", "lo'cal", "lo$al",
            ],
        );
    }

    #[test]
    fn ssh_targets() {
        accepts(
            check_ssh_target,
            &["root@203.0.113.10", "pve01", "deploy@pve.example.org"],
        );
        refuses(
            check_ssh_target,
            &[
                "root@",
                "@host",
                "-oProxyCommand=id",
                "-oProxyCommand=id@host",
                "root@-host",
                "root@host;id",
                "root@host\nid",
                "ro(ot@host",
                "root@ho|st",
            ],
        );
    }

    #[test]
    fn urls() {
        accepts(
            check_https_url,
            &[
                "https://s3.fr-par.scw.cloud",
                "https://203.0.113.10:8006",
                "https://x.example.org/a/b",
            ],
        );
        refuses(
            check_https_url,
            &[
                "http://s3.example.org",
                "https://",
                "https://user@s3.example.org",
                "https://u:p@s3.example.org",
                "https://s3.example.org/?a=b",
                "https://s3.example.org/#x",
                "https://s3.example.org/\"",
                "https://s3.example.org/$(id)",
                "https://s3.example.org/`id`",
                "https://s3.example.org\n",
                "https://s3.example.org/{{.SECRET_ACCESS_KEY}}",
                "https://-x.example.org",
                "https://x_y.example.org",
                "s3.example.org",
                "https:s3.example.org",
            ],
        );
        accepts(
            check_http_url,
            &["http://deb.debian.org/debian", "https://10.10.0.1:8006"],
        );
        refuses(
            check_http_url,
            &[
                "ftp://deb.debian.org/debian",
                "file:///etc/passwd",
                "http://a'b",
            ],
        );
    }

    #[test]
    fn git_urls() {
        accepts(
            check_git_url,
            &[
                "ssh://git@github.com/waddle-social/platform.git",
                "ssh://git@git.example.org:2222/org/repo",
                "ssh://github.com/org/repo.git",
            ],
        );
        refuses(
            check_git_url,
            &[
                "ssh://-oProxyCommand=id/x",
                "ssh://-oProxyCommand/x",
                "ssh://git@-x.example.org/r",
                "ssh://git@-oProxyCommand=id/x",
                "ssh://-oProxyCommand=id@host/x",
                "https://github.com/org/repo.git",
                "git@github.com:org/repo.git",
                "ssh://git@github.com",
                "ssh://git@github.com/",
                "ssh://git@github.com/org/repo.git\n",
                "ssh://git@github.com/$(id)",
                "ssh://git:pw@github.com/org/repo",
            ],
        );
    }

    #[test]
    fn git_branches() {
        accepts(check_git_branch, &["main", "release/2026", "feature-x_1.2"]);
        refuses(
            check_git_branch,
            &[
                "",
                "-f",
                "a..b",
                "a//b",
                "/main",
                "main/",
                ".hidden",
                "a/.b",
                "main.lock",
                "main.",
                "ma in",
                "main\n",
                "ma'in",
                "$(id)",
                "a@{1}",
                "ma\"in",
            ],
        );
    }

    #[test]
    fn repo_paths() {
        accepts(
            check_repo_path,
            &["clusters/waddle-cluster", "clusters", "a_b/c.d"],
        );
        refuses(
            check_repo_path,
            &[
                "",
                "/clusters",
                "clusters/",
                "a//b",
                "../x",
                "a/../b",
                "./a",
                ".github/workflows",
                "clusters/.git",
                "-x",
                "a b",
                "a\nb",
            ],
        );
    }

    #[test]
    fn known_hosts() {
        accepts(
            check_known_host,
            &[
                "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                "github.com,140.82.121.4 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                "[git.example.org]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                "|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            ],
        );
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        refuses(
            check_known_host,
            &[
                &format!("github.com {key}\n@cert-authority * {key}"),
                &format!("@cert-authority * {key}"),
                &format!("@revoked github.com {key}"),
                &format!("* {key}"),
                &format!("!github.com {key}"),
                &format!("-github.com {key}"),
                &format!("github.com\t{key}"),
                &format!("github.com {key} comment"),
                "github.com ssh-ed25519",
                "github.com ssh-dss AAAAB3NzaC1kc3MAAACBAP",
                "github.com ssh-ed25519 not-base64!",
            ],
        );
    }

    #[test]
    fn zfs_datasets() {
        accepts(
            check_zfs_dataset,
            &["rpool/k8s", "tank", "tank/a-b_c.d:e/f"],
        );
        refuses(
            check_zfs_dataset,
            &[
                "",
                "/tank",
                "tank/",
                "tank//k8s",
                "-tank",
                "tank/-o",
                "1tank/k8s",
                "tank/.x",
                "tank/k 8s",
                "tank/k8s;id",
                "tank/k8s\n",
            ],
        );
    }

    #[test]
    fn s3_regions() {
        accepts(check_s3_region, &["fr-par", "us-east-1", "nl-ams"]);
        refuses(
            check_s3_region,
            &[
                "",
                "FR-PAR",
                "fr par",
                "{{ .SECRET_ACCESS_KEY }}",
                "fr-par\n",
                "-fr",
                "fr-",
                "fr_par",
                "fr\"par",
            ],
        );
    }

    #[test]
    fn oauth_client_ids_and_orgs() {
        accepts(
            check_oauth_client_id,
            &["Ov23liWaddleSocialApp", "Iv1.0123abcd"],
        );
        refuses(
            check_oauth_client_id,
            &["", " ", "-x", "a b", "a\"b", "$(id)", "a\nb", ".x"],
        );
        accepts(check_github_org, &["waddle-social", "acme"]);
        refuses(
            check_github_org,
            &["", "-acme", "acme-", "ac--me", "ac me", "ac_me", "a\nb"],
        );
    }

    #[test]
    fn teleport_data_paths() {
        accepts(
            check_teleport_data_path,
            &[
                "/var/lib/teleport/kubeconfig.yaml",
                "/var/lib/teleport/kube/config",
            ],
        );
        refuses(
            check_teleport_data_path,
            &[
                "/",
                "/etc/shadow",
                "/var/lib/teleport",
                "/var/lib/teleport/",
                "/var/lib/teleport/../../../etc/shadow",
                "/var/lib/teleport/./x",
                "/var/lib/teleport//x",
                "/var/lib/teleport/x/",
                "/var/lib/teleportx/y",
                "var/lib/teleport/x",
                "/var/lib/teleport/.x",
                "/var/lib/teleport/x y",
                "/var/lib/teleport/$(id)",
                "/var/lib/teleport/x\n",
            ],
        );
    }

    #[test]
    fn bridge_names_and_cpu_types() {
        accepts(check_bridge_name, &["vmbr0", "vmbr1", "br-lan.10"]);
        refuses(
            check_bridge_name,
            &[
                "",
                "-vmbr0",
                ".x",
                "vmbr0vmbr0vmbr0x",
                "vm br",
                "vm/br",
                "vm\nbr",
            ],
        );
        accepts(
            check_cpu_type,
            &["host", "x86-64-v2-AES", "kvm64", "custom-fast"],
        );
        refuses(
            check_cpu_type,
            &["", "-x", "host;id", "host'", "ho st", "host\n"],
        );
    }

    #[test]
    fn messages_name_invisible_characters() {
        assert_eq!(describe('\n'), "a newline");
        assert_eq!(describe('\u{7}'), "a control character (U+0007)");
        assert_eq!(describe('$'), "`$`");
        let reason = check_s3_region("fr\npar").unwrap_err();
        assert!(reason.contains("a newline"), "{reason}");
    }

    #[test]
    fn types_compare_and_print_as_their_text() {
        let region = S3Region::parse("fr-par").unwrap();
        assert_eq!(region, "fr-par");
        assert_eq!(region.to_string(), "fr-par");
        assert_eq!(serde_json::to_string(&region).unwrap(), "\"fr-par\"");
        assert!(S3Region::parse("{{ .SECRET_ACCESS_KEY }}").is_err());
    }
}
