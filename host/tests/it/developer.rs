//! The plugin author's path end to end: `wharf new` scaffolds a component
//! that builds and deploys into a running host, and dev mode serves an edited
//! component without a restart (a build error keeps the running version).
//!
//! Works on a scratch copy of the workspace (the SDK, the WIT and one
//! component), with its own target directory, so it never edits the real
//! sources or races the other tests' builds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Options, Wharf};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &dest);
            }
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A workspace with just `wit/`, the SDK and (optionally) the `versioned` fixture.
fn scratch_workspace(with_versioned: bool) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let ws = std::env::temp_dir().join(format!("wharf-watch-{}", crate::harness::free_port()));
    copy_dir(&repo.join("wit"), &ws.join("wit"));
    copy_dir(&repo.join(".cargo"), &ws.join(".cargo"));
    copy_dir(&repo.join("components/wharf-sdk"), &ws.join("components/wharf-sdk"));
    if with_versioned {
        copy_dir(&repo.join("host/tests/components/versioned"), &ws.join("components/versioned"));
    }
    std::fs::copy(repo.join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").unwrap();
    let end = start + manifest[start..].find("\n[workspace.package]").unwrap();
    let members = if with_versioned {
        "members = [\"components/wharf-sdk\", \"components/versioned\"]\n"
    } else {
        "members = [\"components/wharf-sdk\"]\n"
    };
    std::fs::write(ws.join("Cargo.toml"), format!("{}{members}{}", &manifest[..start], &manifest[end..])).unwrap();
    std::fs::write(
        ws.join("wharf.toml"),
        "[components.versioned]\nwasm = \"target/wasm32-wasip2/component/versioned.wasm\"\n",
    )
    .unwrap();
    ws
}

fn cargo_build(ws: &Path, package: &str) {
    let status = std::process::Command::new("cargo")
        .args(["build", "--profile", "component", "--target", "wasm32-wasip2", "-p", package])
        .current_dir(ws)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_for_version(w: &Wharf, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (s, v) = w.call("GET", "/version", None).await;
        assert_eq!(s, 200, "{v}");
        if v["version"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still serving {v} after {timeout:?}; log:\n{}",
            crate::harness::tail(&w.logs(), 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_a_component_serves_the_new_behaviour_without_a_restart() {
    let ws = scratch_workspace(true);
    cargo_build(&ws, "versioned");
    let w = Wharf::start_with(Options {
        config: Some(ws.join("wharf.toml")),
        args: vec!["--watch".into()],
        env: vec![("CARGO_TARGET_DIR".into(), ws.join("target").display().to_string())],
        ..Default::default()
    })
    .await;
    wait_for_version(&w, "v1", Duration::from_secs(5)).await;
    let pid = w.pid();

    let src = ws.join("components/versioned/src/lib.rs");
    let code = std::fs::read_to_string(&src).unwrap();
    std::fs::write(&src, code.replace("{ \"v2\" } else { \"v1\" }", "{ \"v2\" } else { \"v1-edited\" }")).unwrap();
    wait_for_version(&w, "v1-edited", Duration::from_secs(120)).await;
    assert_eq!(w.pid(), pid, "same process: no restart");

    // A build error is reported and the running version stays.
    let edited = std::fs::read_to_string(&src).unwrap();
    std::fs::write(&src, format!("{edited}\nfn broken( {{")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !w.logs().contains("build failed") {
        assert!(Instant::now() < deadline, "no build failure reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_version(&w, "v1-edited", Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&ws);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_component_builds_and_deploys_into_a_running_host() {
    let ws = scratch_workspace(false);
    let wharf = env!("CARGO_BIN_EXE_wharf");
    let out = std::process::Command::new(wharf).args(["new", "greeter", "--workspace"]).arg(&ws).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(ws.join("Cargo.toml")).unwrap().contains("\"components/greeter\""));
    cargo_build(&ws, "greeter");

    let token = "new-component-admin-token-0123456789";
    let mut w = Wharf::start_with(Options {
        components: vec!["versioned=versioned-v1"],
        env: vec![("WHARF_ADMIN_TOKEN".into(), token.into())],
        ..Default::default()
    })
    .await;
    let (s, _) = w.call("GET", "/greeter/hello/World", None).await;
    assert_eq!(s, 404, "not there before the deploy");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(wharf)
            .args(args)
            .env("WHARF_URL", format!("http://127.0.0.1:{}", w.port))
            .env("WHARF_ADMIN_TOKEN", token)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let wasm = ws.join("target/wasm32-wasip2/component/greeter.wasm");
    cli(&["deploy", "greeter", wasm.to_str().unwrap()]);
    let (s, body) = w.call("GET", "/greeter/hello/World", None).await;
    assert_eq!((s, body["greeting"].as_str(), body["seen"].as_i64()), (200, Some("hello, world"), Some(1)));
    let (s, _) = w.call("GET", "/greeter/hello/not%20ok", None).await;
    assert_eq!(s, 422);
    assert!(cli(&["components"]).contains("greeter"));

    // A restart brings back what was deployed, configured or not.
    w.crash_and_restart().await;
    let (s, body) = w.call("GET", "/greeter/hello/World", None).await;
    assert_eq!((s, body["seen"].as_i64()), (200, Some(2)));
    let _ = std::fs::remove_dir_all(&ws);
}

/// A tool as `scripts/lib.sh` installs it under target/tools (test.sh
/// exports its path as `var`).
fn installed_tool(var: &str, under_tool_dir: &str) -> PathBuf {
    if let Some(tool) = std::env::var_os(var) {
        return tool.into();
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools");
    std::fs::read_dir(&tools)
        .ok()
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path().join(under_tool_dir))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{var}: run scripts/test.sh, which installs it"))
}

/// One language's path for a new plugin author: `wharf new --lang`, the
/// scaffold's own tests pass natively, it builds and serves, and dev mode
/// rebuilds and swaps it when `rules` is saved (a broken save keeps the
/// running version).
async fn new_component_serves_and_reloads_on_save(lang: &str, sdk: &str, rules: &str) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let ws = std::env::temp_dir().join(format!("wharf-{lang}-{}", crate::harness::free_port()));
    copy_dir(&repo.join("wit"), &ws.join("wit"));
    copy_dir(&repo.join("components").join(sdk), &ws.join("components").join(sdk));
    let wharf = env!("CARGO_BIN_EXE_wharf");
    let out = std::process::Command::new(wharf)
        .args(["new", "greeter", "--lang", lang, "--workspace"])
        .arg(&ws)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = ws.join("components/greeter");
    let (tool_var, tool) = match lang {
        "python" => ("COMPONENTIZE_PY", installed_tool("COMPONENTIZE_PY", "bin/componentize-py")),
        _ => ("COMPONENTIZE_JS", installed_tool("COMPONENTIZE_JS", "node_modules/.bin/componentize-js")),
    };
    let mut own_tests = match lang {
        "python" => {
            let mut c = std::process::Command::new(tool.with_file_name("pytest"));
            c.args(["-q", "-p", "no:cacheprovider"]).arg(&dir);
            c.env("PYTHONPATH", ws.join("components/wharf-py")).env("PYTHONDONTWRITEBYTECODE", "1");
            c
        }
        _ => {
            let mut c = std::process::Command::new("node");
            c.arg("--test").arg(&dir);
            c
        }
    };
    let out = own_tests.output().unwrap();
    assert!(out.status.success(), "the scaffold's own test: {}", String::from_utf8_lossy(&out.stdout));

    // The first build, as scripts/build.sh would; then dev mode rebuilds.
    let wasm = ws.join("target/wasm32-wasip2/component/greeter.wasm");
    std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
    let mut build = std::process::Command::new(&tool);
    match lang {
        "python" => build
            .args(["-q", "-d", "wit", "-w", "component", "componentize", "app", "-p"])
            .arg(&dir)
            .arg("-p")
            .arg(ws.join("components/wharf-py")),
        _ => build.arg(dir.join("app.js")).args([
            "--wit",
            "wit",
            "--world-name",
            "component",
            "-d",
            "http",
            "fetch-event",
        ]),
    };
    let out = build.arg("-o").arg(&wasm).current_dir(&ws).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(
        ws.join("wharf.toml"),
        "[components.greeter]\nwasm = \"target/wasm32-wasip2/component/greeter.wasm\"\ninstance_reuse = 100\n",
    )
    .unwrap();
    let w = Wharf::start_with(Options {
        config: Some(ws.join("wharf.toml")),
        args: vec!["--watch".into()],
        env: vec![(tool_var.into(), tool.display().to_string())],
        ..Default::default()
    })
    .await;
    let (s, body) = w.call("GET", "/greeter/hello/World", None).await;
    assert_eq!((s, body["greeting"].as_str(), body["seen"].as_i64()), (200, Some("hello, world"), Some(1)), "{body}");
    let (s, _) = w.call("GET", "/greeter/hello/not%20ok", None).await;
    assert_eq!(s, 422);
    let pid = w.pid();

    // Saved: rebuilt and swapped in, same process, same data.
    let rules = dir.join(rules);
    std::fs::write(&rules, std::fs::read_to_string(&rules).unwrap().replace("hello, ", "hi, ")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (s, body) = w.call("GET", "/greeter/hello/World", None).await;
        assert_eq!(s, 200, "{body}");
        if body["greeting"] == "hi, world" {
            assert!(body["seen"].as_i64().unwrap() > 1, "the data stays: {body}");
            break;
        }
        assert!(Instant::now() < deadline, "still {body}; log:\n{}", crate::harness::tail(&w.logs(), 20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.pid(), pid, "same process: no restart");

    // A syntax error is reported and the running version stays.
    std::fs::write(&rules, "def broken(:\nfunction broken( {\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !w.logs().contains("build failed") {
        assert!(Instant::now() < deadline, "no build failure reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, body) = w.call("GET", "/greeter/hello/World", None).await;
    assert_eq!((s, body["greeting"].as_str()), (200, Some("hi, world")));
    let _ = std::fs::remove_dir_all(&ws);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_python_component_serves_and_reloads_on_save() {
    new_component_serves_and_reloads_on_save("python", "wharf-py", "rules.py").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_javascript_component_serves_and_reloads_on_save() {
    new_component_serves_and_reloads_on_save("js", "wharf-js", "rules.js").await;
}
