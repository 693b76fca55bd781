//! Reading a credential from a file (a mounted Kubernetes Secret), the one way every token and
//! password file is read: the content as written minus one trailing newline (what `echo` and
//! most editors add), and an empty file refused, because an empty token would silently
//! disable authentication.

use std::path::{Path, PathBuf};

/// Why a secret file gave no secret. Both variants name the file (never its content).
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file could not be read (missing mount, permissions, not UTF-8).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("{} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The secret in `path`: its content without one trailing `\n` (or `\r\n`); refused when
/// nothing but whitespace is left. Other whitespace is kept: it is part of the secret.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let secret = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if secret.trim().is_empty() {
        return Err(SecretFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_of(content: &str) -> Result<String, SecretFileError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, content).expect("write");
        read_secret_file(&path)
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(secret_of("s3cret").unwrap(), "s3cret");
        assert_eq!(secret_of("s3cret\n").unwrap(), "s3cret");
        assert_eq!(secret_of("s3cret\r\n").unwrap(), "s3cret");
        // Only one: a second newline, or inner and leading spaces, belong to the secret.
        assert_eq!(secret_of("s3cret\n\n").unwrap(), "s3cret\n");
        assert_eq!(secret_of(" s3 cret\n").unwrap(), " s3 cret");
    }

    #[test]
    fn empty_files_are_refused() {
        for content in ["", "\n", "\r\n", "  \n"] {
            let err = secret_of(content).unwrap_err();
            assert!(
                matches!(err, SecretFileError::Empty { .. }),
                "{content:?}: {err}"
            );
            assert!(err.to_string().ends_with("token is empty"), "{err}");
        }
    }

    #[test]
    fn unreadable_files_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing");
        let err = read_secret_file(&missing).unwrap_err();
        assert!(matches!(err, SecretFileError::Read { .. }));
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
