//! docs/loadtest.md as a user reads it: every TOML scenario in it parses and checks into a run
//! configuration, and `-d` with a staged scenario is refused instead of silently ignored.

use std::path::PathBuf;
use std::process::Command;

use loadtest::{RunConfig, config::RunSpec, scenario::Scenario};

fn doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/loadtest.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced blocks of `text` whose info string is `lang`.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) if info.trim() == lang => current = Some(String::new()),
            (Some(_), Some(_)) => out.extend(current.take()),
            (Some(block), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

#[test]
fn every_documented_scenario_parses_and_checks() {
    let scenarios = blocks(&doc(), "toml");
    assert!(
        !scenarios.is_empty(),
        "no ```toml block in docs/loadtest.md"
    );
    for text in scenarios {
        let scenario = Scenario::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!scenario.expectations().unwrap().is_empty() || scenario.expect.is_empty());
        let mut spec = RunSpec::default();
        scenario.apply(&mut spec).unwrap();
        RunConfig::try_from(spec).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}

#[test]
fn duration_flag_with_stages_is_refused() {
    let text = blocks(&doc(), "toml").remove(0);
    let dir = std::env::temp_dir().join(format!("loadtest-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["run", "-q", "--scenario"])
        .arg(&path)
        .args(["-d", "1s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("-d/--duration does not apply to a scenario with [[stages]]"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
