//! Errors as the operator sees them: what failed, where (file, line, column, the source line
//! with a caret), what it was called from, its causes and a hint.

use std::fmt::Write as _;
use std::path::Path;

use rhai::{EvalAltResult, ParseError, Position};

/// A place in a runbook or module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Diagnostic {
    pub message: String,
    pub location: Option<Location>,
    /// Outermost first: "in step `…`", "in call to `…`".
    pub context: Vec<String>,
    pub causes: Vec<String>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }

    pub fn at(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A compile error in `file`.
    pub fn from_parse(error: &ParseError, file: &str) -> Self {
        let mut location = location(file, error.position());
        let message = error.err_type().to_string();
        if message.starts_with("Expecting ';'") {
            location = location.map(end_of_previous_statement);
        }
        let hint = parse_hint(&message);
        Self {
            message,
            location,
            hint,
            ..Self::default()
        }
    }

    /// A runtime error raised while running `file`.
    pub fn from_eval(error: &EvalAltResult, file: &str) -> Self {
        let mut diagnostic = Self::default();
        let mut source = file.to_owned();
        let mut current = error;
        loop {
            match current {
                EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                    if !name.starts_with("anon$") {
                        diagnostic.context.push(format!(
                            "in call to `{name}` at {}",
                            describe(&source, *pos)
                        ));
                    }
                    if !src.is_empty() {
                        source = src.clone();
                    }
                    current = inner;
                }
                EvalAltResult::ErrorInModule(path, inner, _) => {
                    diagnostic.context.push(format!("in module `{path}`"));
                    source = path.clone();
                    current = inner;
                }
                other => {
                    diagnostic.location = location(&source, other.position());
                    diagnostic.set_message(other);
                    return diagnostic;
                }
            }
        }
    }

    fn set_message(&mut self, error: &EvalAltResult) {
        let text = match error {
            EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
            other => without_position(&other.to_string()).to_owned(),
        };
        let mut lines = text.split("\ncaused by: ");
        self.message = lines.next().unwrap_or_default().to_owned();
        self.causes = lines.map(str::to_owned).collect();
        self.hint = match error {
            EvalAltResult::ErrorFunctionNotFound(..) => {
                Some("`runbook docs` lists every host function with its parameters".into())
            }
            EvalAltResult::ErrorVariableNotFound(..) => {
                Some("variables from the top of a runbook are not visible inside `fn` functions; pass them as parameters".into())
            }
            EvalAltResult::ErrorTooManyOperations(..) => {
                Some("a loop that never ends? Steps that wait should sleep between attempts".into())
            }
            _ => None,
        };
    }

    /// The diagnostic as text, with the source line and a caret when the file can be read.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}\n", self.message);
        if let Some(location) = &self.location {
            let _ = writeln!(out, "  --> {location}");
            if let Some(line) = source_line(&location.file, location.line) {
                let number = location.line.to_string();
                let pad = " ".repeat(number.len());
                let caret = " ".repeat(caret_offset(&line, location.column));
                let _ = writeln!(out, "{pad} |\n{number} | {line}\n{pad} | {caret}^");
            }
        }
        for context in &self.context {
            let _ = writeln!(out, "  = {context}");
        }
        for cause in &self.causes {
            let _ = writeln!(out, "caused by: {cause}");
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "hint: {hint}");
        }
        out
    }
}

/// Rhai reports a missing `;` at the token after it; when that token opens a line, the `;`
/// belongs at the end of the last line with code before it.
fn end_of_previous_statement(at: Location) -> Location {
    let Ok(text) = std::fs::read_to_string(&at.file) else {
        return at;
    };
    let lines: Vec<&str> = text.lines().collect();
    let Some(current) = lines.get(at.line.saturating_sub(1)) else {
        return at;
    };
    let indent = current.chars().take_while(|c| c.is_whitespace()).count();
    if at.column != indent + 1 {
        return at;
    }
    let previous = (0..at.line - 1)
        .rev()
        .find(|&i| !lines[i].trim().is_empty());
    match previous {
        Some(i) => Location {
            line: i + 1,
            column: lines[i].trim_end().chars().count() + 1,
            ..at
        },
        None => at,
    }
}

/// Rhai ends messages with ` (line L, position C)`; the location is shown on its own line.
fn without_position(text: &str) -> &str {
    match text.rfind(" (line ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text,
    }
}

fn location(file: &str, position: Position) -> Option<Location> {
    let line = position.line()?;
    Some(Location {
        file: file.to_owned(),
        line,
        column: position.position().unwrap_or(1),
    })
}

fn describe(file: &str, position: Position) -> String {
    location(file, position).map_or_else(|| file.to_owned(), |l| l.to_string())
}

fn source_line(file: &str, line: usize) -> Option<String> {
    let text = std::fs::read_to_string(Path::new(file)).ok()?;
    text.lines()
        .nth(line.checked_sub(1)?)
        .map(|l| l.replace('\t', "    "))
}

/// Where the caret goes: Rhai counts columns in characters, from 1.
fn caret_offset(line: &str, column: usize) -> usize {
    let before: String = line.chars().take(column.saturating_sub(1)).collect();
    before.chars().count()
}

fn parse_hint(message: &str) -> Option<String> {
    if message.contains("Expecting ';'") {
        Some("statements end with `;`; a closure's body goes in braces: `|| { ... }`".into())
    } else {
        None
    }
}

/// Where an error happened, as `file:line:column`, for the transcript.
pub fn error_location(error: &EvalAltResult, file: &str) -> Option<String> {
    Diagnostic::from_eval(error, file)
        .location
        .map(|l| l.to_string())
}
