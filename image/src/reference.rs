//! Docker and Kubernetes image reference normalization (a pure function).
//!
//! The grammar is the one of `github.com/distribution/reference`: an optional domain (a first
//! component with a `.` or `:`, or `localhost`), lowercase path components, an optional tag and
//! an optional digest. Normalization fills in what Docker and the kubelet assume: the `docker.io`
//! domain, the `library/` namespace for single-component names, and the `latest` tag when there is
//! neither a tag nor a digest.

use crate::ImageError;

/// The default registry, as the kubelet and containerd spell it.
const DEFAULT_DOMAIN: &str = "docker.io";
/// The longest repository name (domain and path) the reference grammar allows.
const NAME_MAX: usize = 255;
/// The longest tag the reference grammar allows.
const TAG_MAX: usize = 128;

/// Normalizes `reference` the way Docker and Kubernetes do: `busybox` becomes
/// `docker.io/library/busybox:latest`, `foo/bar:1` becomes `docker.io/foo/bar:1`,
/// `registry:5000/x` keeps its registry, and a `@sha256:…` digest is kept (and suppresses the
/// implicit `latest` tag).
pub fn normalize_reference(reference: &str) -> Result<String, ImageError> {
    let invalid = |reason: &str| ImageError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    };
    if reference.is_empty() {
        return Err(invalid("it is empty"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        check_digest(digest).map_err(invalid)?;
    }
    // A tag is what follows the last ':' when no '/' follows it; otherwise that ':' is a port.
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag).map_err(invalid)?;
    }
    if name.is_empty() {
        return Err(invalid("the repository name is empty"));
    }
    let (domain, path) = split_domain(name);
    check_domain(domain).map_err(invalid)?;
    for component in path.split('/') {
        check_path_component(component).map_err(invalid)?;
    }
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    let mut normalized = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{domain}/library/{path}")
    } else {
        format!("{domain}/{path}")
    };
    if normalized.len() > NAME_MAX {
        return Err(invalid("the repository name is longer than 255 bytes"));
    }
    match (tag, digest) {
        (Some(tag), _) => {
            normalized.push(':');
            normalized.push_str(tag);
        }
        (None, None) => normalized.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        normalized.push('@');
        normalized.push_str(digest);
    }
    Ok(normalized)
}

/// Splits a repository name into its domain and path, as `splitDockerDomain` does: the first
/// component is a domain only if more components follow and it looks like a host.
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

/// `host[:port]`, with the host either DNS labels or a bracketed IPv6 address.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(inner) = domain.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or("the registry's IPv6 address has no closing bracket")?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err("the registry's IPv6 address is invalid");
        }
        match after {
            "" => return Ok(()),
            _ => (
                "ipv6",
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("junk after the registry's IPv6 address")?,
                ),
            ),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the registry port is not a number");
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("the registry host name is invalid")
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn check_path_component(component: &str) -> Result<(), &'static str> {
    if component.is_empty() {
        return Err("a path component of the repository name is empty");
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("the repository name must be lowercase");
    }
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return Err("a repository path component must start and end with a letter or digit");
    }
    for separator in component.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        let ok = separator.is_empty()
            || matches!(separator, "." | "_" | "__")
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return Err("the repository name has an invalid character or separator");
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes() {
        [] => Err("the tag is empty"),
        [first, ..] if !word(*first) => Err("the tag must start with a letter, digit or '_'"),
        bytes if bytes.len() > TAG_MAX => Err("the tag is longer than 128 bytes"),
        bytes if bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') => Ok(()),
        _ => Err("the tag has an invalid character"),
    }
}

/// `sha256:` and 64 lowercase hex digits, or `sha512:` and 128.
pub(crate) fn check_digest(digest: &str) -> Result<(), &'static str> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or("the digest has no algorithm")?;
    let len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err("the digest algorithm is not sha256 or sha512"),
    };
    if hex.len() == len && is_lower_hex(hex) {
        Ok(())
    } else {
        Err("the digest is not lowercase hex of the algorithm's length")
    }
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest".to_owned()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_owned()),
            ("foo/bar:1", "docker.io/foo/bar:1".to_owned()),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".to_owned(),
            ),
            (
                "index.docker.io/foo/bar",
                "docker.io/foo/bar:latest".to_owned(),
            ),
            ("registry:5000/x", "registry:5000/x:latest".to_owned()),
            ("registry:5000/x:v2", "registry:5000/x:v2".to_owned()),
            ("localhost/x", "localhost/x:latest".to_owned()),
            ("quay.io/a/b/c:t", "quay.io/a/b/c:t".to_owned()),
            ("[::1]:5000/x", "[::1]:5000/x:latest".to_owned()),
            (
                "a__b.c-d---e",
                "docker.io/library/a__b.c-d---e:latest".to_owned(),
            ),
            (
                &format!("busybox@{DIGEST}"),
                format!("docker.io/library/busybox@{DIGEST}"),
            ),
            (
                &format!("busybox:1@{DIGEST}"),
                format!("docker.io/library/busybox:1@{DIGEST}"),
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest".to_owned(),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_reference(input).unwrap(),
                expected,
                "normalizing `{input}`"
            );
        }
    }

    #[test]
    fn normalization_is_idempotent() {
        for input in ["busybox", "foo/bar:1", "registry:5000/x", "localhost/x:y"] {
            let once = normalize_reference(input).unwrap();
            assert_eq!(normalize_reference(&once).unwrap(), once);
        }
    }

    #[test]
    fn rejects_invalid_references() {
        let cases = [
            "",
            ":tag",
            "busybox:",
            "Busybox",
            "foo/Bar",
            "foo//bar",
            "foo/bar/",
            "-foo",
            "foo_-bar",
            "foo...bar",
            "busybox:-x",
            "busybox:a/b",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
            "registry:port/x",
            "bad_host.com/x",
            "has space",
        ];
        for input in cases {
            let error = normalize_reference(input).expect_err(input);
            assert!(
                error.to_string().contains(&format!("`{input}`")),
                "error for `{input}` names it: {error}"
            );
        }
        let long_tag = format!("busybox:{}", "a".repeat(129));
        assert!(normalize_reference(&long_tag).is_err());
    }
}
