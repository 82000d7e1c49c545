//! Embeds the Rhai files of `stdlib/` so an installed binary can import them when no
//! `stdlib/` folder sits near the runbook. A folder on disk always takes precedence.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=stdlib");
    let mut names: Vec<String> = std::fs::read_dir("stdlib")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".rhai"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let mut code = String::from("pub static EMBEDDED_STDLIB: &[(&str, &str)] = &[\n");
    for name in names {
        let path = Path::new(&root).join("stdlib").join(&name);
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("stdlib.rs");
    if let Err(err) = std::fs::write(&out, code) {
        panic!("cannot write {}: {err}", out.display());
    }
}
