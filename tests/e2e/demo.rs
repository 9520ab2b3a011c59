//! `tally demo` on a fresh temporary database: it finishes, and its summary
//! shows each workflow deciding (an oversell prevented, a quarantined
//! record, a stale-stock hold, a pending approval, an alert).

use std::process::Command;

/// The number after `label` on the summary's line for it.
fn figure(summary: &str, label: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{summary}"));
    line[line.find(label).unwrap() + label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure on {line:?}"))
}

#[test]
fn the_demo_day_shows_every_workflow_deciding() {
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("demo")
        .output()
        .expect("tally demo runs");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{summary}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(figure(&summary, "oversells prevented"), 20, "{summary}");
    assert!(figure(&summary, "records held") >= 2, "{summary}");
    assert!(
        figure(&summary, "decisions held, stale stock") >= 1,
        "{summary}"
    );
    assert!(figure(&summary, "pending approvals") >= 1, "{summary}");
    assert!(figure(&summary, "duplicates ignored") >= 6, "{summary}");
    assert!(figure(&summary, "Alerts") >= 1, "{summary}");
    assert!(summary.contains("stock_drop"), "{summary}");
}
