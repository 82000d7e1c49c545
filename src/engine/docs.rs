//! `runbook docs`: the reference of every host function, generated from the engine's own
//! function metadata so it cannot drift from the code.

use std::fmt::Write as _;

use serde_json::Value;

/// The name under which the functions without a namespace are listed.
pub const GLOBAL: &str = "global";

/// Markdown reference for one namespace, or all of them.
pub fn reference(engine: &rhai::Engine, namespace: Option<&str>) -> Result<String, String> {
    let json = engine
        .gen_fn_metadata_to_json(false)
        .map_err(|err| err.to_string())?;
    let metadata: Value = serde_json::from_str(&json).map_err(|err| err.to_string())?;
    let mut sections: Vec<(String, Vec<Value>)> = Vec::new();
    let global = metadata["functions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    sections.push((GLOBAL.to_owned(), global));
    if let Some(modules) = metadata["modules"].as_object() {
        for (name, module) in modules {
            let functions = module["functions"].as_array().cloned().unwrap_or_default();
            sections.push((name.clone(), functions));
        }
    }
    if let Some(wanted) = namespace {
        sections.retain(|(name, _)| name == wanted);
        if sections.is_empty() {
            return Err(format!(
                "no namespace `{wanted}` (known: {})",
                namespaces(engine).join(", ")
            ));
        }
    }
    let mut out = String::from("# runbook host functions\n");
    for (name, functions) in sections {
        render_namespace(&name, &functions, &mut out);
    }
    Ok(out)
}

/// Every namespace `docs` knows, `global` first.
pub fn namespaces(engine: &rhai::Engine) -> Vec<String> {
    let json = engine.gen_fn_metadata_to_json(false).unwrap_or_default();
    let metadata: Value = serde_json::from_str(&json).unwrap_or_default();
    let mut names = vec![GLOBAL.to_owned()];
    if let Some(modules) = metadata["modules"].as_object() {
        names.extend(modules.keys().cloned());
    }
    names
}

fn render_namespace(name: &str, functions: &[Value], out: &mut String) {
    let _ = writeln!(out, "\n## {name}\n");
    let mut functions: Vec<&Value> = functions.iter().filter(|f| !is_operator(f)).collect();
    functions.sort_by_key(|f| f["name"].as_str().unwrap_or_default().to_owned());
    for function in functions {
        let prefix = if name == GLOBAL {
            String::new()
        } else {
            format!("{name}::")
        };
        let heading = match property(function) {
            Some(property) => property,
            None => format!("{prefix}{}", signature(function)),
        };
        let _ = writeln!(out, "### `{heading}`\n");
        for line in function["docComments"].as_array().into_iter().flatten() {
            let text = line.as_str().unwrap_or_default();
            let text = text.strip_prefix("///").unwrap_or(text);
            let _ = writeln!(out, "{}", text.strip_prefix(' ').unwrap_or(text));
        }
        out.push('\n');
    }
}

/// A property getter (`get$status`) as scripts use it: `HttpResponse.status -> int`.
fn property(function: &Value) -> Option<String> {
    let name = function["name"].as_str()?.strip_prefix("get$")?;
    let owner = function["params"][0]["type"]
        .as_str()
        .map(friendly)
        .unwrap_or_default();
    let returns = function["returnType"]
        .as_str()
        .map(friendly)
        .unwrap_or_default();
    Some(format!("{owner}.{name} -> {returns}"))
}

fn signature(function: &Value) -> String {
    let name = function["name"].as_str().unwrap_or_default();
    let params: Vec<String> = function["params"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match (p["name"].as_str(), p["type"].as_str()) {
            (Some(n), Some(t)) => format!("{n}: {}", friendly(t)),
            (Some(n), None) => n.to_owned(),
            (None, Some(t)) => friendly(t),
            (None, None) => "_".to_owned(),
        })
        .collect();
    let returns = function["returnType"]
        .as_str()
        .map(friendly)
        .unwrap_or_default();
    let arrow = if returns.is_empty() || returns == "()" {
        String::new()
    } else {
        format!(" -> {returns}")
    };
    format!("{name}({}){arrow}", params.join(", "))
}

/// Rust types as script writers know them.
fn friendly(rust_type: &str) -> String {
    rust_type
        .replace("&mut ", "")
        .replace("&str", "string")
        .replace("ImmutableString", "string")
        .replace("String", "string")
        .replace("i64", "int")
        .replace("f64", "float")
}

fn is_operator(function: &Value) -> bool {
    let name = function["name"].as_str().unwrap_or_default();
    !name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}
