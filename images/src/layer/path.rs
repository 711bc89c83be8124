//! The one spelling of a path inside a layer, so entries from different tars
//! compare equal: `./etc/hosts`, `etc/hosts`, `/etc/hosts` and `etc/hosts/`
//! are all `etc/hosts`, and the root directory is the empty path.

/// The normalised form of a tar entry's path.
pub fn normalize(raw: &[u8]) -> &[u8] {
    let mut path = raw;
    loop {
        if let Some(rest) = path.strip_prefix(b"./") {
            path = rest;
        } else if let Some(rest) = path.strip_prefix(b"/") {
            path = rest;
        } else {
            break;
        }
    }
    while let Some(rest) = path.strip_suffix(b"/") {
        path = rest;
    }
    if path == b"." {
        return b"";
    }
    path
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn spellings_of_one_path_agree() {
        for spelling in [
            "./etc/hosts",
            "etc/hosts",
            "/etc/hosts",
            "etc/hosts/",
            ".//etc/hosts",
        ] {
            assert_eq!(normalize(spelling.as_bytes()), b"etc/hosts", "{spelling}");
        }
        for root in ["./", ".", "/", ""] {
            assert_eq!(normalize(root.as_bytes()), b"", "{root:?}");
        }
    }
}
