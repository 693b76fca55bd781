//! Masking credentials in URLs before they reach a message or a log line: the user
//! information (`postgres://user:pass@db`, `nats://token@host`) and the whole query
//! (`?access_token=...`, `?password=...`), since which query keys are secret depends on the
//! server.

/// `url` (or a comma-separated list of URLs, as NATS takes them) with the user information of
/// each replaced by `***` and any query by `?***`. Text that is not a URL comes back unchanged.
pub fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            let (url, query) = match url.split_once('?') {
                Some((before, _)) => (before, "?***"),
                None => (url, ""),
            };
            let authority_start = url.find("://").map_or(0, |i| i + 3);
            let authority_end = url[authority_start..]
                .find(['/', '#'])
                .map_or(url.len(), |i| authority_start + i);
            match url[authority_start..authority_end].rfind('@') {
                Some(at) => format!(
                    "{}***@{}{query}",
                    &url[..authority_start],
                    &url[authority_start + at + 1..]
                ),
                None => format!("{url}{query}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn user_information_is_masked() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/x"),
            "postgres://***@db:5432/x"
        );
        assert_eq!(
            redact_url("nats://user:pw@host:4222,tls://tok@other"),
            "nats://***@host:4222,tls://***@other"
        );
    }

    #[test]
    fn queries_are_masked() {
        assert_eq!(
            redact_url("postgres://db/x?user=u&password=secret"),
            "postgres://db/x?***"
        );
        assert_eq!(
            redact_url("http://host/path@x?access_token=s3cret"),
            "http://host/path@x?***"
        );
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
        assert_eq!(redact_url("host:4222"), "host:4222");
        // An `@` in the path is not user information.
        assert_eq!(redact_url("http://host/a@b"), "http://host/a@b");
    }
}
