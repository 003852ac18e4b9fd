//! The published API description is the contract: Schemathesis, an
//! OpenAPI-driven fuzzer, runs every phase (examples, coverage, fuzzing,
//! stateful) and every check against a fresh host, so `/openapi.json` and
//! what the components answer cannot drift apart.
//!
//! The fuzzer is pinned and installed by `scripts/test.sh`
//! (`ensure_schemathesis`), which passes its path in `WHARF_SCHEMATHESIS`;
//! the seed is fixed, so a failure replays. `tests/fixtures/schemathesis.toml`
//! lists the rules no schema can state (each with its reason).

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Options, Wharf};

const ADMIN: &str = "k-admin-conformance-0000000";
/// Fixed: the same cases on every run, so a failure can be replayed.
const SEED: &str = "20261204";

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("WHARF_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/schemathesis-4.32.5/bin/schemathesis")
    });
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which installs the pinned Schemathesis",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_as_its_openapi_document_says() {
    let bin = schemathesis();
    let env = vec![("WHARF_API_KEYS".to_string(), format!("{ADMIN}:admin:ops"))];
    // The Python and JavaScript components too: their routes are in the
    // document as their manifests declare them.
    let components = vec!["inventory", "payment", "analytics", "loyalty", "reviews"];
    let w = Wharf::start_with(Options { components, env, ..Default::default() }).await;
    let report = crate::harness::scratch_dir("schemathesis");
    let report_dir = report.clone();
    let auth = format!("Authorization: Bearer {ADMIN}");
    let url = format!("{}/openapi.json", w.url());
    let out = tokio::task::spawn_blocking(move || {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemathesis.toml");
        Command::new(bin)
            .arg("--config-file")
            .arg(config)
            .args(["run", &url, "--checks", "all", "--seed", SEED, "--max-examples", "100"])
            .args(["--phases", "examples,coverage,fuzzing,stateful", "--workers", "1"])
            .args(["--no-color", "--request-timeout", "10", "--generation-database", "none"])
            .args(["-H", &auth])
            .arg("--report-dir")
            .arg(&report)
            .args(["--report", "junit"])
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Schemathesis found the API and its document apart (seed {SEED}):\n{stdout}\n{stderr}\nhost log tail:\n{}",
        crate::harness::tail(&w.logs(), 40)
    );
    // It did test every operation of the document (but the document itself,
    // which Schemathesis leaves out as its own source).
    let (_, doc) = w.call("GET", "/openapi.json", None).await;
    let listed: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase())))
        .filter(|op| op != "GET /openapi.json")
        .collect();
    assert!(listed.len() >= 14, "{doc}");
    let junit = std::fs::read_dir(&report_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".xml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("a JUnit report");
    for op in &listed {
        assert!(junit.contains(&format!("testcase name=\"{op}\"")), "{op} was not tested:\n{stdout}");
    }
}
