//! How a component's source becomes wasm, by what its directory holds:
//! `Cargo.toml` (Rust, cargo), `app.py` (Python, componentize-py) or
//! `app.js` (JavaScript, componentize-js). The watcher (`watch`) rebuilds with it; a
//! person runs the same through `scripts/build.sh`.

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// A component's language, as its directory shows it (and `wharf new --lang`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    #[value(name = "js", alias = "javascript")]
    JavaScript,
}

impl Lang {
    /// The language of the component in `dir`; None for a directory that
    /// holds none of the three.
    pub fn of(dir: &Path) -> Option<Lang> {
        if dir.join("Cargo.toml").exists() {
            Some(Lang::Rust)
        } else if dir.join("app.py").exists() {
            Some(Lang::Python)
        } else if dir.join("app.js").exists() {
            Some(Lang::JavaScript)
        } else {
            None
        }
    }

    /// The language's SDK under `workspace`: a change there rebuilds every
    /// component of the language.
    pub fn sdk(self, workspace: &Path) -> PathBuf {
        workspace.join("components").join(match self {
            Lang::Rust => "wharf-sdk",
            Lang::Python => "wharf-py",
            Lang::JavaScript => "wharf-js",
        })
    }
}

/// The command that builds component `name` of `lang`, from `workspace`,
/// into `wasm` (cargo decides its own output: the configured path must be
/// where it puts it). The Python and JavaScript tools are those
/// `scripts/lib.sh` installs, named by `COMPONENTIZE_PY` and
/// `COMPONENTIZE_JS` (`scripts/dev.sh` sets both), else found on the `PATH`.
/// The arguments are those of `build_py_component` and `build_js_component`
/// in `scripts/lib.sh`.
pub fn command(lang: Lang, workspace: &Path, name: &str, wasm: &Path) -> Command {
    let dir = workspace.join("components").join(name);
    let mut cmd = match lang {
        Lang::Rust => {
            let mut cmd = Command::new("cargo");
            cmd.args(["build", "--profile", "component", "--target", "wasm32-wasip2", "--message-format", "short"]);
            cmd.arg("-p").arg(name);
            cmd
        }
        Lang::Python => {
            let mut cmd = Command::new(tool("COMPONENTIZE_PY", "componentize-py"));
            cmd.args(["-q", "-d", "wit", "-w", "component", "componentize", "app", "-p"]);
            cmd.arg(&dir).arg("-p").arg(lang.sdk(workspace)).arg("-o").arg(wasm);
            cmd
        }
        Lang::JavaScript => {
            let mut cmd = Command::new(tool("COMPONENTIZE_JS", "componentize-js"));
            cmd.arg(dir.join("app.js"));
            cmd.args(["--wit", "wit", "--world-name", "component", "-d", "http", "fetch-event", "-o"]).arg(wasm);
            cmd
        }
    };
    cmd.current_dir(workspace);
    cmd
}

fn tool(var: &str, default: &str) -> std::ffi::OsString {
    std::env::var_os(var).unwrap_or_else(|| default.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_says_its_language() {
        let dir = std::env::temp_dir().join(format!("wharf-lang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Lang::of(&dir), None);
        std::fs::write(dir.join("app.py"), "").unwrap();
        assert_eq!(Lang::of(&dir), Some(Lang::Python));
        std::fs::write(dir.join("Cargo.toml"), "").unwrap();
        assert_eq!(Lang::of(&dir), Some(Lang::Rust), "a crate is Rust, whatever else it holds");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
