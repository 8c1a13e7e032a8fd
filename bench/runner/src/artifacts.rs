//! Artifact sizes of the arm64 Lambda builds (`cargo lambda build --release --arm64
//! --output-format zip` writes `<target>/lambda/<function>/bootstrap.zip`): the zip as
//! uploaded and the `bootstrap` inside it (read from the zip's central directory).

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactSize {
    pub function: String,
    pub zip_bytes: u64,
    /// The uncompressed `bootstrap` binary.
    pub bootstrap_bytes: Option<u64>,
}

/// Sizes for each function whose `bootstrap.zip` exists under `lambda_dir`.
pub fn sizes(lambda_dir: &Path, functions: &[&str]) -> Vec<ArtifactSize> {
    functions
        .iter()
        .filter_map(|f| {
            let zip = lambda_dir.join(f).join("bootstrap.zip");
            let bytes = std::fs::read(&zip).ok()?;
            let loose = std::fs::metadata(lambda_dir.join(f).join("bootstrap"))
                .ok()
                .map(|m| m.len());
            Some(ArtifactSize {
                function: (*f).to_string(),
                zip_bytes: bytes.len() as u64,
                bootstrap_bytes: loose.or_else(|| uncompressed_size(&bytes, "bootstrap")),
            })
        })
        .collect()
}

fn u16_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u64)
}

fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as u64)
}

const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const CENTRAL_DIRECTORY_ENTRY: u32 = 0x0201_4b50;

/// The uncompressed size of the entry `name` of a (non-zip64) zip archive.
pub fn uncompressed_size(zip: &[u8], name: &str) -> Option<u64> {
    let eocd = (0..zip.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(zip, i) == Some(END_OF_CENTRAL_DIRECTORY as u64))?;
    let entries = u16_at(zip, eocd + 10)?;
    let mut at = u32_at(zip, eocd + 16)? as usize;
    for _ in 0..entries {
        if u32_at(zip, at)? != CENTRAL_DIRECTORY_ENTRY as u64 {
            return None;
        }
        let size = u32_at(zip, at + 24)?;
        let name_len = u16_at(zip, at + 28)? as usize;
        let extra_len = u16_at(zip, at + 30)? as usize;
        let comment_len = u16_at(zip, at + 32)? as usize;
        if zip.get(at + 46..at + 46 + name_len)? == name.as_bytes() {
            return Some(size);
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip's central directory and end record for `(name, uncompressed size)` entries
    /// (local headers and data are not read by `uncompressed_size`, so a filler stands in).
    fn zip_with(entries: &[(&str, u32)]) -> Vec<u8> {
        let mut zip = vec![0u8; 64];
        let directory_at = zip.len() as u32;
        for (name, size) in entries {
            zip.extend(CENTRAL_DIRECTORY_ENTRY.to_le_bytes());
            zip.extend([0u8; 16]);
            zip.extend((size / 2).to_le_bytes());
            zip.extend(size.to_le_bytes());
            zip.extend((name.len() as u16).to_le_bytes());
            zip.extend([0u8; 16]);
            zip.extend(name.as_bytes());
        }
        let directory_len = zip.len() as u32 - directory_at;
        zip.extend(END_OF_CENTRAL_DIRECTORY.to_le_bytes());
        zip.extend([0u8; 4]);
        zip.extend((entries.len() as u16).to_le_bytes());
        zip.extend((entries.len() as u16).to_le_bytes());
        zip.extend(directory_len.to_le_bytes());
        zip.extend(directory_at.to_le_bytes());
        zip.extend([0u8; 2]);
        zip
    }

    #[test]
    fn the_bootstrap_entry_size_is_found_among_others() {
        let zip = zip_with(&[("README", 10), ("bootstrap", 7_000_123)]);
        assert_eq!(uncompressed_size(&zip, "bootstrap"), Some(7_000_123));
        assert_eq!(uncompressed_size(&zip, "README"), Some(10));
        assert_eq!(uncompressed_size(&zip, "missing"), None);
        assert_eq!(
            uncompressed_size(b"not a zip at all, long enough", "x"),
            None
        );
    }

    #[test]
    fn sizes_skip_functions_without_a_build() {
        let dir = std::env::temp_dir().join(format!("bench-artifacts-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lead-ingest")).unwrap();
        let zip = zip_with(&[("bootstrap", 4096)]);
        std::fs::write(dir.join("lead-ingest/bootstrap.zip"), &zip).unwrap();
        let found = sizes(&dir, &["lead-ingest", "crm-worker"]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found,
            vec![ArtifactSize {
                function: "lead-ingest".into(),
                zip_bytes: zip.len() as u64,
                bootstrap_bytes: Some(4096),
            }]
        );
    }
}
