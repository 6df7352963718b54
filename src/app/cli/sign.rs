//! `fluid-webhooks sign [FILE]`: print the `X-FLUID-Signature` of a body, for signed curl.

use std::{io::Read, path::PathBuf};

use anyhow::Context;

use crate::{intake::signature, secret::Secret};

/// Signs FILE, or standard input when omitted, and prints the signature.
pub fn run(file: Option<PathBuf>, secret: Secret) -> anyhow::Result<()> {
    let body = match file {
        Some(path) => {
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
        }
        None => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading standard input")?;
            body
        }
    };
    println!("{}", signature::sign(&secret, &body));
    Ok(())
}
