//! cli: the completions and man pages `sni-filter generate` writes (what the Debian package
//! ships) name every subcommand the binary's `--help` lists, so none is left undocumented.

use std::process::Command;

/// Runs the binary with `args` and returns its stdout; it must succeed.
fn sni_filter(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sni-filter"))
        .args(args)
        .output()
        .expect("sni-filter runs");
    assert!(
        out.status.success(),
        "sni-filter {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `--help` lists, `help` itself aside.
fn subcommands() -> Vec<String> {
    let help = sni_filter(&["--help"]);
    let names: Vec<String> = help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 10, "too few subcommands read from:\n{help}");
    names
}

#[test]
fn completions_offer_every_subcommand() {
    let names = subcommands();
    let bash = sni_filter(&["generate", "completions", "bash"]);
    // The words offered after `sni-filter `.
    let top = bash
        .lines()
        .find(|line| line.trim_start().starts_with("opts=\"-h -V --instance"))
        .unwrap_or_else(|| panic!("no top-level word list in:\n{bash}"));
    let zsh = sni_filter(&["generate", "completions", "zsh"]);
    let fish = sni_filter(&["generate", "completions", "fish"]);
    for name in &names {
        assert!(
            top.trim()
                .trim_end_matches('"')
                .split_whitespace()
                .any(|w| w == name),
            "bash: {name} not offered: {top}"
        );
        assert!(zsh.contains(&format!("'{name}:")), "zsh: {name} missing");
        assert!(
            fish.contains(&format!("-a \"{name}\"")),
            "fish: {name} missing"
        );
    }
}

#[test]
fn man_pages_document_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().to_str().unwrap();
    let listed = sni_filter(&["generate", "man", dir_text]);
    let names = subcommands();
    assert_eq!(listed.lines().count(), names.len() + 1, "{listed}");
    let top = std::fs::read_to_string(dir.path().join("sni-filter.8")).unwrap();
    assert!(
        top.contains(".TH sni-filter 8") && top.contains(".SH NAME"),
        "{top}"
    );
    for name in &names {
        // roff escapes the dashes of the page names it refers to.
        let reference = format!("sni-filter-{name}(8)").replace('-', "\\-");
        assert!(top.contains(&reference), "sni-filter.8 lacks {reference}");
        let page = std::fs::read_to_string(dir.path().join(format!("sni-filter-{name}.8")))
            .unwrap_or_else(|e| panic!("no page for {name}: {e}"));
        assert!(
            page.contains(&format!(".TH sni-filter-{name} 8")) && page.contains(".SH NAME"),
            "{page}"
        );
        assert!(
            page.contains(sni_filter::build_info::VERSION),
            "the page of {name} does not name the version"
        );
    }
    assert!(
        !dir.path().join("sni-filter-generate.8").exists(),
        "the hidden generate command got a page"
    );
}
