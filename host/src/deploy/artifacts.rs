//! The data directory and the component versions kept in it.
//!
//! `<data_dir>` holds the embedded Redis's data and every deployed version,
//! and a precompiled `.cwasm` there is loaded as native code: whoever can
//! write it runs code in the host. So the directory is created private
//! (0700), a directory writable by others or owned by another user is
//! refused, and each precompiled artifact carries an HMAC-SHA256 tag under
//! a key kept outside the artifacts folder (`<data_dir>/artifact.key`,
//! 0600). An artifact whose tag does not verify is compiled again from its
//! wasm, and a wasm whose sha256 is not its name is refused.
//!
//! Writes go to a temporary file of their own, then are renamed: a crash
//! or a concurrent writer never leaves half a file under a real name.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;
const TAG_BYTES: usize = 32;

/// Creates `dir` private (0700) if it is missing; refuses one that others
/// may write to or that another user owns.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "{} belongs to user {}, not to this process's user {me}: refusing to trust it",
            dir.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        bail!(
            "{} may be written by other users (mode {mode:03o}): anyone could plant code the host runs; `chmod 700 {}`",
            dir.display(),
            dir.display()
        );
    }
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:03o}"), "the data directory is readable by other users; `chmod 700` it");
    }
    Ok(())
}

/// Writes `bytes` to `path` through a private temporary file in the same
/// directory, then renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Content-addressed component versions: `<sha256>.wasm` and its tagged
/// precompiled form `<sha256>.cwasm`.
pub struct Artifacts {
    dir: PathBuf,
    key: [u8; 32],
}

impl Artifacts {
    /// Opens (creating) `<data_dir>/artifacts` and the tag key beside it.
    pub fn open(data_dir: &Path) -> Result<Artifacts> {
        ensure_private_dir(data_dir)?;
        let dir = data_dir.join("artifacts");
        ensure_private_dir(&dir)?;
        let key = load_or_create_key(&data_dir.join("artifact.key"))?;
        Ok(Artifacts { dir, key })
    }

    /// Keeps the wasm of version `sha` (once: the name is its content).
    pub fn keep_wasm(&self, sha: &str, wasm: &[u8]) -> Result<()> {
        let path = self.dir.join(format!("{sha}.wasm"));
        if !path.exists() {
            write_atomically(&path, wasm)?;
        }
        Ok(())
    }

    /// The wasm of version `sha`, refused if its content is not that version.
    pub fn read_wasm(&self, sha: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(format!("{sha}.wasm"));
        let wasm = std::fs::read(&path).with_context(|| format!("the artifact of {sha} is missing"))?;
        if hex::encode(Sha256::digest(&wasm)) != sha {
            bail!("{} does not hold version {sha} (its content was changed): refusing it", path.display());
        }
        Ok(wasm)
    }

    /// The precompiled form of `sha`, if one is kept and its tag verifies.
    pub fn read_compiled(&self, sha: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(format!("{sha}.cwasm"));
        let mut bytes = std::fs::read(&path).ok()?;
        if bytes.len() < TAG_BYTES || !self.verify(sha, &bytes[TAG_BYTES..], &bytes[..TAG_BYTES]) {
            tracing::warn!(path = %path.display(), "precompiled artifact failed its integrity check; compiling again");
            return None;
        }
        bytes.drain(..TAG_BYTES);
        Some(bytes)
    }

    /// Keeps the precompiled form of `sha`, tagged.
    pub fn keep_compiled(&self, sha: &str, compiled: &[u8]) -> Result<()> {
        let mut bytes = Vec::with_capacity(TAG_BYTES + compiled.len());
        bytes.extend_from_slice(&self.tag(sha, compiled));
        bytes.extend_from_slice(compiled);
        write_atomically(&self.dir.join(format!("{sha}.cwasm")), &bytes)
    }

    fn mac(&self, sha: &str, compiled: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        // The version is part of what is signed: a valid artifact of one
        // version cannot be planted under another's name.
        mac.update(sha.as_bytes());
        mac.update(b"\n");
        mac.update(compiled);
        mac
    }

    fn tag(&self, sha: &str, compiled: &[u8]) -> [u8; TAG_BYTES] {
        self.mac(sha, compiled).finalize().into_bytes().into()
    }

    fn verify(&self, sha: &str, compiled: &[u8], tag: &[u8]) -> bool {
        self.mac(sha, compiled).verify_slice(tag).is_ok()
    }
}

/// The tag key: 32 random bytes in a 0600 file, made on first use.
fn load_or_create_key(path: &Path) -> Result<[u8; 32]> {
    if let Ok(bytes) = std::fs::read(path) {
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!("{} is readable by other users (mode {mode:03o}); `chmod 600` it", path.display());
        }
        return bytes.try_into().map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()));
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for the artifact key: {e}"))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&key)?;
    file.sync_all()?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        std::env::temp_dir().join(format!("wharf-artifacts-{}", uuid::Uuid::new_v4().simple()))
    }

    #[test]
    fn tags_verify_only_for_their_version_and_content() {
        let data = scratch();
        let a = Artifacts::open(&data).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(data.join("artifact.key")).unwrap().permissions().mode() & 0o777, 0o600);
        let (one, two) = ("1".repeat(64), "2".repeat(64));
        a.keep_compiled(&one, b"native code").unwrap();
        assert_eq!(a.read_compiled(&one).as_deref(), Some(&b"native code"[..]));
        // The same file under another version's name, or changed: refused.
        std::fs::copy(a.dir.join(format!("{one}.cwasm")), a.dir.join(format!("{two}.cwasm"))).unwrap();
        assert_eq!(a.read_compiled(&two), None);
        let mut bytes = std::fs::read(a.dir.join(format!("{one}.cwasm"))).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(a.dir.join(format!("{one}.cwasm")), bytes).unwrap();
        assert_eq!(a.read_compiled(&one), None);
        // Reopened, the same key verifies what it tagged.
        a.keep_compiled(&one, b"native code").unwrap();
        assert_eq!(Artifacts::open(&data).unwrap().read_compiled(&one).as_deref(), Some(&b"native code"[..]));

        let wasm = b"\0asm";
        let sha = hex::encode(Sha256::digest(wasm));
        a.keep_wasm(&sha, wasm).unwrap();
        assert_eq!(a.read_wasm(&sha).unwrap(), wasm);
        std::fs::write(a.dir.join(format!("{sha}.wasm")), b"other").unwrap();
        assert!(a.read_wasm(&sha).unwrap_err().to_string().contains("changed"));
        std::fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn a_data_dir_others_may_write_is_refused() {
        let data = scratch();
        ensure_private_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&data).unwrap_err().to_string();
        assert!(err.contains("written by other users"), "{err}");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(ensure_private_dir(&data).is_ok(), "readable by the group: a warning, not a refusal");
        std::fs::remove_dir_all(&data).unwrap();
    }
}
