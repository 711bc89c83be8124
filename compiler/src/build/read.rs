//! Reading a blueprint file into a `SourceFile`. Text that is not UTF-8 is
//! an invalid blueprint (TOML is UTF-8), reported at its first bad byte like
//! any other finding, not as an I/O error.

use std::path::{Path, PathBuf};

use crate::diagnostics::{rules, Diagnostic};
use crate::source::SourceFile;

/// Why a blueprint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read blueprint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file with its bad bytes shown as U+FFFD, and the finding.
    #[error("{} is not UTF-8", file.name)]
    NotUtf8 {
        file: SourceFile,
        diagnostic: Box<Diagnostic>,
    },
}

/// Reads the blueprint at `path`.
pub fn read_blueprint(path: &Path) -> Result<SourceFile, ReadError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(name, bytes)
}

fn decode(name: String, bytes: Vec<u8>) -> Result<SourceFile, ReadError> {
    let err = match String::from_utf8(bytes) {
        Ok(text) => return Ok(SourceFile { name, text }),
        Err(err) => err,
    };
    let at = err.utf8_error().valid_up_to();
    let bad = err.as_bytes()[at..]
        .iter()
        .take(err.utf8_error().error_len().unwrap_or(1))
        .map(|b| format!("0x{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ");
    // The valid prefix is kept byte for byte, so the offset is a valid span
    // of the lossy text shown.
    let source = SourceFile {
        name,
        text: String::from_utf8_lossy(err.as_bytes()).into_owned(),
    };
    let width = '\u{FFFD}'.len_utf8();
    let diagnostic = Diagnostic::new(
        &rules::TOML_SYNTAX,
        at..at + width,
        format!("byte {bad} at offset {at} is not UTF-8; TOML files are UTF-8"),
    )
    .with_label("not UTF-8 (shown as \u{FFFD})")
    .with_help("save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or remove the character");
    Err(ReadError::NotUtf8 {
        file: source,
        diagnostic: Box::new(diagnostic),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_text_is_read_as_is() {
        let source = decode("b.toml".into(), b"[host]\n".to_vec()).unwrap();
        assert_eq!(source.text, "[host]\n");
    }

    #[test]
    fn the_first_bad_byte_is_located() {
        let Err(ReadError::NotUtf8 { file, diagnostic }) =
            decode("b.toml".into(), b"name = \"caf\xE9\"\n".to_vec())
        else {
            panic!("latin-1 text must be refused");
        };
        assert_eq!(diagnostic.span, 11..14);
        assert!(diagnostic.message.contains("0xE9 at offset 11"));
        assert_eq!(&file.text[11..14], "\u{FFFD}");
    }
}
