//! Syntax of names: DNS names and labels (RFC 1123, shared with the
//! checked types of `model::checked`), Proxmox tags, slugs, versions.
//! Pure predicates that return the reason a name is refused.

pub use crate::model::checked::{check_dns_name, check_label};

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

/// A Flux distribution version as the Flux Operator resolves it: a
/// release (`2.7.0`) or a range of one (`2.7.x`, `2.x`).
pub fn check_version_range(range: &str) -> Result<(), String> {
    let parts: Vec<&str> = range.split('.').collect();
    let number = |p: &&str| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit());
    let ok = (1..=3).contains(&parts.len())
        && parts.first().is_some_and(number)
        && parts[1..].iter().all(|p| number(p) || *p == "x");
    if ok {
        Ok(())
    } else if range.chars().all(|c| c.is_ascii_graphic()) {
        Err(format!(
            "`{range}` is not a Flux version such as `2.7.x` or `2.7.0`"
        ))
    } else {
        Err("is not a Flux version such as `2.7.x` or `2.7.0`".into())
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
    fn flux_versions_are_releases_or_ranges() {
        for good in ["2.7.x", "2.x", "2.7.0", "2"] {
            assert!(check_version_range(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "x",
            "2.7.x\n",
            ">=2.5",
            "2..x",
            "v2.7",
            "2.7.x; id",
            "{{ .x }}",
        ] {
            assert!(check_version_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_follow_proxmox_syntax() {
        assert!(check_tag("infra").is_ok());
        assert!(check_tag("k8s").is_ok());
        assert!(check_tag("Infra").is_err());
        assert!(check_tag("in fra").is_err());
    }
}
