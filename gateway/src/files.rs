//! Private files (keys, password and credential files): written whole or not at all.

use std::io::Write as _;
use std::path::Path;

/// Writes `data` to `path` so that a crash leaves either the old file or the new one: into a
/// fresh temporary file next to it (mode 0600 on Unix; a file or link already at the
/// temporary name is removed, never followed), synced, renamed over `path`, and the directory
/// synced so the rename itself survives a power cut.
///
/// # Errors
/// The I/O error, naming the file.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let named = |e: std::io::Error, what: &Path| {
        std::io::Error::new(e.kind(), format!("cannot write {}: {e}", what.display()))
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| named(e, &tmp))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| named(e, &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| named(e, path))?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| named(e, path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_with_mode_0600_and_does_not_follow_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt as _, symlink};
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
            let victim = dir.path().join("victim");
            std::fs::write(&victim, b"keep").unwrap();
            symlink(&victim, path.with_extension("tmp")).unwrap();
            write_private(&path, b"three").unwrap();
            assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
            assert_eq!(std::fs::read(&path).unwrap(), b"three");
        }
        let missing = dir.path().join("no/such/dir/file");
        let err = write_private(&missing, b"x").unwrap_err();
        assert!(err.to_string().contains("cannot write"), "{err}");
    }
}
