//! Reading PEM files: each block is checked for the kind the caller expects, so a key given
//! where a certificate belongs, or a file of garbage, is named as such.

use std::path::{Path, PathBuf};

use crate::files::{self, FileError};

/// Why a PEM file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error(transparent)]
    File(#[from] FileError),
    /// The file was read; what is wrong with what it holds.
    #[error("`{}` {problem}", path.display())]
    Content { path: PathBuf, problem: PemProblem },
}

/// What is wrong with a PEM file's contents, without its path (for callers that name the file
/// themselves).
#[derive(Debug, thiserror::Error)]
pub enum PemProblem {
    #[error("is not PEM: {0}")]
    NotPem(String),
    #[error("holds no PEM block")]
    Empty,
    #[error("holds a `{found}` block where {expected} was expected")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("holds {0} private keys; a key file holds exactly one")]
    ManyKeys(usize),
    #[error("{what} number {index} does not parse: {reason}")]
    BadDer {
        what: &'static str,
        index: usize,
        reason: String,
    },
}

fn refused(path: &Path, problem: PemProblem) -> PemError {
    PemError::Content {
        path: path.to_path_buf(),
        problem,
    }
}

/// What a caller expects to find in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Certificate,
    PrivateKey,
    Csr,
    Crl,
}

impl Kind {
    fn tags(self) -> &'static [&'static str] {
        match self {
            Kind::Certificate => &["CERTIFICATE"],
            Kind::PrivateKey => &["PRIVATE KEY", "EC PRIVATE KEY"],
            Kind::Csr => &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"],
            Kind::Crl => &["X509 CRL"],
        }
    }

    fn described(self) -> &'static str {
        match self {
            Kind::Certificate => "a certificate",
            Kind::PrivateKey => "a private key",
            Kind::Csr => "a certificate signing request",
            Kind::Crl => "a CRL",
        }
    }
}

/// Reads every block of `kind` from a file; any block of another kind is an error.
pub fn read_blocks(path: &Path, kind: Kind) -> Result<Vec<Vec<u8>>, PemError> {
    let bytes = files::read(path)?;
    parse_blocks(path, &bytes, kind)
}

/// Parses PEM text already in memory (the path is only used in messages).
pub fn parse_blocks(path: &Path, bytes: &[u8], kind: Kind) -> Result<Vec<Vec<u8>>, PemError> {
    let blocks =
        pem::parse_many(bytes).map_err(|e| refused(path, PemProblem::NotPem(e.to_string())))?;
    if blocks.is_empty() {
        return Err(refused(path, PemProblem::Empty));
    }
    blocks
        .into_iter()
        .map(|b| {
            if kind.tags().contains(&b.tag()) {
                Ok(b.into_contents())
            } else {
                Err(refused(
                    path,
                    PemProblem::WrongKind {
                        expected: kind.described(),
                        found: b.tag().to_owned(),
                    },
                ))
            }
        })
        .collect()
}

/// Reads certificates and checks that each one parses as X.509.
pub fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, PemError> {
    let ders = read_blocks(path, Kind::Certificate)?;
    for (i, der) in ders.iter().enumerate() {
        x509_parser::parse_x509_certificate(der).map_err(|e| {
            refused(
                path,
                PemProblem::BadDer {
                    what: "certificate",
                    index: i + 1,
                    reason: e.to_string(),
                },
            )
        })?;
    }
    Ok(ders)
}

/// Reads a private key file, which must hold exactly one key, and returns the key's DER.
pub fn read_private_key(path: &Path) -> Result<Vec<u8>, PemError> {
    let bytes = files::read(path)?;
    one_key(path, &bytes)
}

/// Reads a private key file, which must hold exactly one key, and returns its PEM text (for
/// rcgen).
pub fn read_private_key_pem(path: &Path) -> Result<String, PemError> {
    let bytes = files::read(path)?;
    one_key(path, &bytes)?;
    String::from_utf8(bytes).map_err(|e| refused(path, PemProblem::NotPem(e.to_string())))
}

fn one_key(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, PemError> {
    let mut blocks = parse_blocks(path, bytes, Kind::PrivateKey)?;
    match blocks.len() {
        1 => Ok(blocks.remove(0)),
        n => Err(refused(path, PemProblem::ManyKeys(n))),
    }
}

/// Encodes DER blocks as PEM text.
pub fn encode(tag: &str, ders: &[&[u8]]) -> String {
    ders.iter()
        .map(|d| pem::encode(&pem::Pem::new(tag, d.to_vec())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_with_two_keys_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("two.key");
        std::fs::write(&path, encode("PRIVATE KEY", &[b"one", b"two"])).expect("write");
        match read_private_key(&path) {
            Err(PemError::Content {
                problem: PemProblem::ManyKeys(2),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_and_wrong_kinds_are_named() {
        let p = Path::new("x.pem");
        assert!(matches!(
            parse_blocks(p, b"hello world", Kind::Certificate),
            Err(PemError::Content {
                problem: PemProblem::Empty,
                ..
            })
        ));
        let key = encode("PRIVATE KEY", &[b"abc"]);
        match parse_blocks(p, key.as_bytes(), Kind::Certificate) {
            Err(PemError::Content {
                problem: PemProblem::WrongKind { found, .. },
                ..
            }) => assert_eq!(found, "PRIVATE KEY"),
            other => panic!("unexpected {other:?}"),
        }
        let cert = encode("CERTIFICATE", &[b"abc"]);
        assert_eq!(
            parse_blocks(p, cert.as_bytes(), Kind::Certificate).unwrap(),
            vec![b"abc".to_vec()]
        );
    }
}
