//! `wharf new NAME`: a component crate that builds with one command and
//! deploys into a running host, laid out like inventory and payment (rules
//! in plain Rust, a thin binding layer).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::storage::is_valid_name;

pub fn new_component(workspace: &Path, name: &str) -> Result<()> {
    if !is_valid_name(name) || name.contains('_') {
        bail!("component names are 1-64 characters of a-z, 0-9 and -");
    }
    let dir = workspace.join("components").join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let type_name: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), CARGO.replace("{name}", name))?;
    std::fs::write(dir.join("src/lib.rs"), LIB.replace("{name}", name).replace("{Type}", &type_name))?;
    std::fs::write(dir.join("src/rules.rs"), RULES.replace("{name}", name))?;

    let manifest = workspace.join("Cargo.toml");
    let added = add_member(&manifest, &format!("components/{name}"))?;
    println!("Created components/{name}.");
    if !added {
        println!("Add \"components/{name}\" to the workspace members in {}.", manifest.display());
    }
    println!(
        "\nBuild it:\n  cargo build --profile component --target wasm32-wasip2 -p {name}\n\
         Deploy it into a running host (WHARF_ADMIN_TOKEN set on both sides):\n  \
         wharf deploy {name} target/wasm32-wasip2/component/{name}.wasm\n\
         Or serve it from the start: add to wharf.toml\n  \
         [components.{name}]\n  wasm = \"target/wasm32-wasip2/component/{name}.wasm\"\n\
         Then try: curl localhost:8080/{name}/hello/world"
    );
    Ok(())
}

/// Inserts `member` into the workspace's `members = [...]`; false if there is no such list.
fn add_member(manifest: &Path, member: &str) -> Result<bool> {
    let Ok(text) = std::fs::read_to_string(manifest) else { return Ok(false) };
    let Some(start) = text.find("members = [") else { return Ok(false) };
    let insert_at = start + "members = [".len();
    let updated = format!("{}\n    \"{member}\",{}", &text[..insert_at], &text[insert_at..]);
    std::fs::write(manifest, updated).with_context(|| format!("updating {}", manifest.display()))?;
    Ok(true)
}

const CARGO: &str = r#"[package]
name = "{name}"
edition.workspace = true
version.workspace = true
license.workspace = true

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
wharf-sdk = { workspace = true }
serde = { workspace = true }
serde_json = { workspace = true }
"#;

const LIB: &str = r#"//! The {name} component: HTTP routes and event handlers, bound to the host
//! through wharf-sdk. Business rules live in `rules.rs`.

// Without std its instances are cheaper to create (fewer imports); natively,
// for `cargo test`, std is there. Need files or `std::time`? Delete these
// three lines and the runtime call, and use std as usual.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

wharf_sdk::no_std_runtime!();

pub mod rules;

use wharf_sdk::prelude::*;
use wharf_sdk::kv::{self, IncrementOutcome};
use wharf_sdk::{ApiError, App, Component, Reply, Req};

pub struct {Type};

impl Component for {Type} {
    fn app() -> App {
        App::new("{name}").get("/{name}/hello/{who}", hello)
    }
}

wharf_sdk::export_component!({Type});

fn hello(req: &Req) -> Result<Reply, ApiError> {
    let who = rules::clean_name(req.param("who"))?;
    let seen = match kv::increment(&format!("seen:{who}"), 1, None, None, None)? {
        IncrementOutcome::Applied(n) => n,
        _ => 0,
    };
    Reply::json(200, &serde_json::json!({ "greeting": rules::greeting(&who), "seen": seen }))
}
"#;

const RULES: &str = r#"//! Business rules of {name}: plain functions, tested natively with `cargo test -p {name}`.

use wharf_sdk::ApiError;
use wharf_sdk::prelude::*;

/// Accepts short alphanumeric names only.
pub fn clean_name(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() || raw.len() > 64 || !raw.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::unprocessable("invalid_name", "names are 1-64 letters or digits"));
    }
    Ok(raw.to_lowercase())
}

pub fn greeting(who: &str) -> String {
    format!("hello, {who}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_clean_names() {
        assert_eq!(greeting(&clean_name("World").unwrap()), "hello, world");
        assert_eq!(clean_name("no spaces").unwrap_err().status, 422);
    }
}
"#;
