//! The documentation's own checks, so that it stays true as the code moves:
//!
//! - every relative link in `README.md`, `CONTRIBUTING.md` and `docs/*.md` names a file that
//!   exists, and every `#anchor` a heading of that file;
//! - `docs/configuration.md` lists exactly the variables each service reads, each with the
//!   default the code uses.
//!
//! The README's shell commands are run as written against the compose stack by CI's compose
//! stage (`.ci/readme_commands.py`), since they need the stack.

// Test code: an unwrap that fails is a failing test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use shared::config::{FromLayers, Variable};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pages checked: the README, CONTRIBUTING.md and every page of `docs/`.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut pages = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The lines of `text` outside fenced code blocks, with their numbers.
fn prose(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fenced = false;
    text.lines().enumerate().filter_map(move |(index, line)| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return None;
        }
        (!fenced).then_some((index + 1, line))
    })
}

/// The anchors GitHub gives the headings of `text`: lower case, punctuation dropped, spaces as
/// `-`, and `-1`, `-2` … after repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let title = heading.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let count = seen.entry(slug.clone()).or_default();
        anchors.insert(match *count {
            0 => slug,
            n => format!("{slug}-{n}"),
        });
        *count += 1;
    }
    anchors
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let link = Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    // Inline code may show link syntax without being a link.
    let code = Regex::new("`[^`]*`").unwrap();
    let mut checked = 0;
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|error| panic!("{}: {error}", page.display()));
        for (number, line) in prose(&text) {
            let line = code.replace_all(line, "");
            for found in link.captures_iter(&line) {
                let target = &found[1];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let resolved = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().unwrap().join(file)
                };
                let whereabouts = format!("{}:{number}: {target}", page.display());
                if !resolved.exists() {
                    broken.push(format!("{whereabouts} (no such file)"));
                } else if !anchor.is_empty() {
                    let headings = anchors(&std::fs::read_to_string(&resolved).unwrap());
                    if !headings.contains(anchor) {
                        broken.push(format!("{whereabouts} (no such heading)"));
                    }
                }
            }
        }
    }
    eprintln!("{checked} relative links checked");
    assert!(checked > 10, "only {checked} relative links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The rows of the configuration page's table under each `## ` heading: variable → its
/// default cell.
fn documented_variables() -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md")).unwrap();
    let row = Regex::new(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|").unwrap();
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for (_, line) in prose(&text) {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim().to_owned();
        } else if let Some(found) = row.captures(line) {
            let previous = sections
                .entry(section.clone())
                .or_default()
                .insert(found[1].to_owned(), found[2].trim().to_owned());
            assert!(
                previous.is_none(),
                "{} is listed twice under {section}",
                &found[1]
            );
        }
    }
    sections
}

/// Compares what `service` reads with what the page says of it: the section shared by both
/// services and the service's own.
fn check_service(service: &str, own_section: &str, read: Vec<Variable>) -> usize {
    let sections = documented_variables();
    let mut documented = sections
        .get("Both services")
        .cloned()
        .expect("a section `## Both services`");
    documented.extend(
        sections
            .get(own_section)
            .cloned()
            .unwrap_or_else(|| panic!("a section `## {own_section}`")),
    );
    let mut read: BTreeMap<String, Option<String>> = read
        .into_iter()
        .map(|variable| (variable.name, variable.default))
        .collect();
    // The logger reads RUST_LOG itself, not through the settings.
    read.insert(
        "RUST_LOG".to_owned(),
        Some(shared::logging::DEFAULT_FILTER.to_owned()),
    );
    let read_names: BTreeSet<String> = read.keys().cloned().collect();
    let documented_names: BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(
        read_names.difference(&documented_names).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{service} reads these, but docs/configuration.md does not list them"
    );
    assert_eq!(
        documented_names.difference(&read_names).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "docs/configuration.md lists these for the {service}, which it does not read"
    );
    for (name, default) in &read {
        let cell = &documented[name];
        match default {
            // The one default that depends on the machine, said in words.
            Some(_) if name == "WORKERS" => {
                assert!(cell.contains("number of CPUs"), "WORKERS: {cell}")
            }
            Some(default) => assert!(
                cell.contains(&format!("`{default}`")),
                "{name}: the {service} defaults to `{default}`, the page says {cell}"
            ),
            None => assert!(
                cell.contains("unset"),
                "{name}: the {service} leaves it unset by default, the page says {cell}"
            ),
        }
    }
    eprintln!("{service}: {} variables checked", read.len());
    read.len()
}

#[test]
fn the_configuration_page_lists_every_variable_each_service_reads_with_its_default() {
    let upstream = check_service("upstream", "The upstream", upstream::Settings::variables());
    let consumer = check_service("consumer", "The consumer", consumer::Settings::variables());
    assert!(upstream >= 10 && consumer >= 10, "{upstream}, {consumer}");
}

#[test]
fn the_link_check_knows_github_anchors() {
    let found =
        anchors("# portbound\n## The upstream contract (v1)\n## Test\n## Test\n```\n# no\n```\n");
    let expected: BTreeSet<String> = ["portbound", "the-upstream-contract-v1", "test", "test-1"]
        .map(str::to_owned)
        .into();
    assert_eq!(found, expected);
}
