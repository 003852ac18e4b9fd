//! `wharf new NAME [--lang rust|python|js]`: a component that builds with
//! one command and deploys into a running host, laid out like inventory and
//! payment (rules in plain code with their tests, a thin binding layer).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::dev::build::Lang;
use crate::storage::is_valid_name;

pub fn new_component(workspace: &Path, name: &str, lang: Lang) -> Result<()> {
    if !is_valid_name(name) || name.contains('_') {
        bail!("component names are 1-64 characters of a-z, 0-9 and -");
    }
    let dir = workspace.join("components").join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    match lang {
        Lang::Rust => new_crate(workspace, &dir, name),
        Lang::Python => new_python(&dir, name),
        Lang::JavaScript => new_javascript(&dir, name),
    }
}

/// What to do next, for a component that is not a crate.
fn print_next(name: &str, test: &str) {
    println!(
        "Created components/{name}.\n\n\
         Test its rules natively:\n  {test}\n\
         Build it (installs the pinned tools on first use):\n  scripts/build.sh {name}\n\
         Deploy it into a running host (WHARF_ADMIN_TOKEN set on both sides):\n  \
         wharf deploy {name} target/wasm32-wasip2/component/{name}.wasm\n\
         Or serve it from the start (and rebuilt on save by scripts/dev.sh): add to wharf.toml\n  \
         [components.{name}]\n  wasm = \"target/wasm32-wasip2/component/{name}.wasm\"\n  instance_reuse = 1000\n\
         Then try: curl localhost:8080/{name}/hello/world"
    );
}

fn new_python(dir: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("app.py"), PY_APP.replace("{name}", name))?;
    std::fs::write(dir.join("rules.py"), PY_RULES.replace("{name}", name))?;
    std::fs::write(dir.join("test_rules.py"), PY_TEST.replace("{name}", name))?;
    print_next(name, &format!("scripts/pytest.sh components/{name}"));
    Ok(())
}

fn new_javascript(dir: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("app.js"), JS_APP.replace("{name}", name))?;
    std::fs::write(dir.join("rules.js"), JS_RULES.replace("{name}", name))?;
    std::fs::write(dir.join("rules.test.js"), JS_TEST.replace("{name}", name))?;
    std::fs::write(dir.join("package.json"), "{ \"type\": \"module\", \"private\": true }\n")?;
    print_next(name, &format!("node --test components/{name}"));
    Ok(())
}

fn new_crate(workspace: &Path, dir: &Path, name: &str) -> Result<()> {
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

const PY_APP: &str = r#""""The {name} component: HTTP routes and event handlers, bound to the host
through the wharf SDK (components/wharf-py). Business rules live in rules.py."""

import rules
from wharf import ApiError, App, Reply, kv

app = App("{name}")


@app.get("/{name}/hello/{who}", summary="Greets someone", answers=[(200, "A greeting"), (422, "A bad name")])
def hello(req):
    who = rules.clean_name(req.param("who"))
    if who is None:
        raise ApiError.unprocessable("invalid_name", "names are 1-64 letters or digits")
    seen = kv.increment(f"seen:{who}", 1).value
    return Reply.json(200, {"greeting": rules.greeting(who), "seen": seen})


# componentize-py looks for these three classes in the app module.
Manifest, Http, EventsHandler = app.exports()
"#;

const PY_RULES: &str = r#""""Business rules of {name}: plain functions, tested natively with pytest."""

from typing import Optional


def clean_name(raw: str) -> Optional[str]:
    """Short alphanumeric names only, lower-cased; None for anything else."""
    if not raw or len(raw) > 64 or not (raw.isascii() and raw.isalnum()):
        return None
    return raw.lower()


def greeting(who: str) -> str:
    return f"hello, {who}"
"#;

const PY_TEST: &str = r#""""{name}'s rules, natively: no wasm, no host."""

import rules


def test_greets_clean_names():
    assert rules.greeting(rules.clean_name("World")) == "hello, world"
    assert rules.clean_name("no spaces") is None
"#;

const JS_APP: &str = r#"// The {name} component: HTTP routes and event handlers, bound to the host
// through the wharf SDK (components/wharf-js). Business rules live in rules.js.

import { App, ApiError, Reply, kv } from "../wharf-js/index.js";
import { cleanName, greeting } from "./rules.js";

const app = new App("{name}");

app.get("/{name}/hello/{who}", { summary: "Greets someone", answers: [[200, "A greeting"], [422, "A bad name"]] }, (req) => {
  const who = cleanName(req.param("who"));
  if (who === null) throw ApiError.unprocessable("invalid_name", "names are 1-64 letters or digits");
  const seen = kv.increment(`seen:${who}`, 1).value;
  return Reply.json(200, { greeting: greeting(who), seen });
});

// componentize-js looks for these three exports.
export const { manifest, http, eventsHandler } = app.exports();
"#;

const JS_RULES: &str = r#"// Business rules of {name}: plain functions, tested natively with `node --test`.

/** Short alphanumeric names only, lower-cased; null for anything else. */
export function cleanName(raw) {
  return /^[A-Za-z0-9]{1,64}$/.test(raw) ? raw.toLowerCase() : null;
}

export function greeting(who) {
  return `hello, ${who}`;
}
"#;

const JS_TEST: &str = r#"// {name}'s rules, natively: no wasm, no host.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cleanName, greeting } from "./rules.js";

test("greets clean names", () => {
  assert.equal(greeting(cleanName("World")), "hello, world");
  assert.equal(cleanName("no spaces"), null);
});
"#;

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
