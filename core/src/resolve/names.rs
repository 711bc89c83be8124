//! Syntax of names: DNS names and labels (RFC 1123), Proxmox tags, slugs.
//! Pure predicates that return the reason a name is refused.

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
        return Err(format!(
            "label `{label}` contains `{c}`; only letters, digits and `-` are allowed"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label `{label}` starts or ends with `-`"));
    }
    Ok(())
}

/// How a name checked by [`check_lowercase_label`] is written.
pub const LOWERCASE_LABEL_HELP: &str =
    "use lowercase letters, digits and `-` (1 to 63, not first or last), e.g. `talos-cp1`";

/// Checks a name that becomes a hostname or a Kubernetes object's name (VMs,
/// Talos nodes, VIPs, a StorageClass, a bucket): an RFC 1123 label in lower
/// case, since Kubernetes refuses `Talos-1` as a node name while DNS would
/// not tell it from `talos-1`.
pub fn check_lowercase_label(label: &str) -> Result<(), String> {
    check_label(label)?;
    if label.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "`{label}` has uppercase letters; it becomes a hostname or Kubernetes name, which are \
             lowercase: write `{}`",
            label.to_ascii_lowercase()
        ));
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

/// Whether `host` is the domain itself or under it (case-insensitive).
pub fn is_under_domain(host: &str, domain: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    host == domain || host.ends_with(&format!(".{domain}"))
}

/// Proxmox tag syntax (`pve-tag`): lowercase start, then `[a-z0-9_+.-]`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '+' | '.' | '-')
        })
    {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` is not a Proxmox tag; use lowercase letters, digits and `_ + . -`"
        ))
    }
}

/// A GitHub team slug as Teleport matches it: exact, lowercase, hyphenated.
pub fn check_team_slug(slug: &str) -> Result<(), String> {
    if slug.contains('*') {
        return Err(format!(
            "`{slug}` is not a team slug: Teleport matches GitHub teams exactly, so `*` is a \
             literal, not a wildcard, and nobody would match"
        ));
    }
    if slug.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "`{slug}` has uppercase letters, but GitHub team slugs are lowercase and Teleport \
             compares them exactly; write `{}`",
            slug.to_ascii_lowercase()
        ));
    }
    if slug.is_empty()
        || !slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "`{slug}` is not a GitHub team slug (lowercase letters, digits, `-`)"
        ));
    }
    Ok(())
}

/// A Unix login name that `useradd` accepts portably.
pub fn check_login(login: &str) -> Result<(), String> {
    let mut chars = login.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        && login.len() <= 32;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{login}` is not a portable Unix login (lowercase letters, digits, `_`, `-`; at most 32)"
        ))
    }
}

/// A version pin: `1.2.3`, `v1.12.4`, `18.2.1`; never `18.x` or `latest`.
pub fn check_version(version: &str) -> Result<(), String> {
    let digits = version.strip_prefix('v').unwrap_or(version);
    let parts: Vec<&str> = digits.split('.').collect();
    if !parts.is_empty()
        && parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        Ok(())
    } else {
        Err(format!(
            "`{version}` is not a version pin; write numbers such as `1.19.0` or `v1.12.4` \
             (ranges like `18.x` or `latest` make builds change under you)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(check_dns_name("teleport.example.org").is_ok());
        assert!(check_dns_name("a-b.example.org").is_ok());
        assert!(check_dns_name("-a.example.org").is_err());
        assert!(check_dns_name("a..example.org").is_err());
        assert!(check_dns_name("a_b.example.org").is_err());
        assert!(check_dns_name(&format!("{}.org", "a".repeat(64))).is_err());
    }

    #[test]
    fn machine_names_are_lowercase_labels() {
        assert!(check_lowercase_label("talos-cp1").is_ok());
        assert!(check_lowercase_label("Talos-cp1")
            .unwrap_err()
            .contains("`talos-cp1`"));
        assert!(check_lowercase_label("talos_cp1").is_err());
        assert!(check_lowercase_label("-talos").is_err());
        assert!(check_lowercase_label("talos-").is_err());
        assert!(check_lowercase_label(&"a".repeat(64)).is_err());
        assert!(check_lowercase_label(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn domain_membership_needs_a_dot_boundary() {
        assert!(is_under_domain("x.example.org", "example.org"));
        assert!(is_under_domain("EXAMPLE.org", "example.org"));
        assert!(!is_under_domain("evilexample.org", "example.org"));
        assert!(!is_under_domain("example.org.evil.net", "example.org"));
    }

    #[test]
    fn team_slugs_refuse_wildcards_and_uppercase() {
        assert!(check_team_slug("infra").is_ok());
        assert!(check_team_slug("platform-ops").is_ok());
        assert!(check_team_slug("*").unwrap_err().contains("literal"));
        assert!(check_team_slug("Infra").unwrap_err().contains("`infra`"));
    }

    #[test]
    fn versions_must_be_pins() {
        assert!(check_version("v1.12.4").is_ok());
        assert!(check_version("18.2.1").is_ok());
        assert!(check_version("18.x").is_err());
        assert!(check_version("latest").is_err());
    }

    #[test]
    fn tags_follow_proxmox_syntax() {
        assert!(check_tag("infra").is_ok());
        assert!(check_tag("k8s").is_ok());
        assert!(check_tag("Infra").is_err());
        assert!(check_tag("in fra").is_err());
    }
}
