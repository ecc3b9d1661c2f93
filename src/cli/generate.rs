//! `secintake generate man|completions DIR` (hidden): the man pages
//! (clap_mangen: one per command) and bash, zsh and fish completions
//! (clap_complete), made from the same clap definition as `--help`, for
//! the .deb (`scripts/package.sh`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Generated};

pub(super) fn generate(what: Generated, dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    match what {
        Generated::Man => {
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?;
        }
        Generated::Completions => {
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(shell, &mut cmd, "secintake", dir)
                    .with_context(|| format!("writing {shell} completions to {}", dir.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
