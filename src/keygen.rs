//! `dainet keygen`: a new ed25519 identity from the operating system's random source.
//!
//! Writes the secret seed with [`Keypair::save`] (hex, mode 0600, never overwriting a file),
//! prints the node id (the hex public key) on stdout and where the key went on stderr.

use anyhow::{bail, Context, Result};
use dainet_ledger::identity::{IdentityError, Keypair};
use getrandom::SysRng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

/// Arguments of `dainet keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The key file to write; an existing file is never overwritten.
    #[arg(long, default_value = "dainet.key")]
    pub out: PathBuf,
}

/// Runs `dainet keygen`.
pub fn keygen(args: KeygenArgs) -> Result<()> {
    let path = &args.out;
    // Checked first for a clear message; `save` refuses too (create_new), so a race loses nothing.
    if path.symlink_metadata().is_ok() {
        bail!(
            "{}: already exists; a key file is never overwritten (move it away or pass another --out)",
            path.display()
        );
    }
    let mut rng = ChaCha20Rng::try_from_rng(&mut SysRng).context("cannot read the operating system's random source")?;
    let keypair = Keypair::generate(&mut rng);
    match keypair.save(path) {
        Ok(()) => {}
        Err(IdentityError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
            bail!("{}: already exists; a key file is never overwritten", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot write the key file", path.display())),
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", keypair.node_id())?;
    stdout.flush()?;
    eprintln!("wrote the secret key to {} (mode 0600); the line above is its node id", path.display());
    Ok(())
}
