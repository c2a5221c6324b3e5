//! Files written whole or not at all.
//!
//! [`write_whole`] writes to a temporary name beside the target, syncs, and renames into place:
//! a crash leaves the old file or the new one, never a torn one, and a failed write (a full
//! disk) removes its temporary file, so nothing partial is left behind.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name [`write_whole`] uses for `path`: `path` with `.tmp` appended.
pub fn temporary_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` whole or not at all (see the module docs).
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary_name(path);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        // On disk before the rename makes it visible.
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // Whatever failed, leave nothing partial behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_a_failed_write_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("dainet-core-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        write_whole(&path, b"one").unwrap();
        write_whole(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!temporary_name(&path).exists());
        // A target in a folder that does not exist: the write fails and leaves nothing.
        let missing = dir.join("no-such-folder").join("b.json");
        assert!(write_whole(&missing, b"x").is_err());
        assert!(!temporary_name(&missing).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
