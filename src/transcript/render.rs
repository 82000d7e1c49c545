//! Reports rendered from a transcript: Markdown, JUnit XML and JSON.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::event::{
    Effect, Event, LogLevel, Outcome, Record, RunEnd, RunStart, Status, StepEnd, StepKind,
};

/// A run as a tree of sections and steps, rebuilt from its transcript.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub start: Option<RunStart>,
    pub end: Option<RunEnd>,
    pub items: Vec<Item>,
    /// Logs written outside any step.
    pub logs: Vec<LogLine>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum Item {
    Section(SectionNode),
    Step(StepNode),
}

#[derive(Debug, Serialize)]
pub struct SectionNode {
    pub title: String,
    pub status: Option<Status>,
    pub duration_ms: Option<u64>,
    pub items: Vec<Item>,
}

#[derive(Debug, Serialize)]
pub struct StepNode {
    pub kind: StepKind,
    pub title: String,
    pub end: Option<StepEnd>,
    pub calls: Vec<Call>,
    pub logs: Vec<LogLine>,
}

#[derive(Debug, Serialize)]
pub struct Call {
    pub name: String,
    pub effect: Effect,
    pub target: String,
    pub outcome: Option<Outcome>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// Where each id lives while the tree is built: a path of child indexes from the root.
type Path = Vec<usize>;

impl Report {
    pub fn from_records(records: &[Record]) -> Self {
        let mut builder = ReportBuilder::default();
        for record in records {
            builder.add(&record.event);
        }
        builder.report
    }

    /// Every step in run order, with the titles of the sections around it.
    pub fn steps(&self) -> Vec<(Vec<&str>, &StepNode)> {
        let mut out = Vec::new();
        collect_steps(&self.items, &mut Vec::new(), &mut out);
        out
    }
}

fn collect_steps<'a>(
    items: &'a [Item],
    sections: &mut Vec<&'a str>,
    out: &mut Vec<(Vec<&'a str>, &'a StepNode)>,
) {
    for item in items {
        match item {
            Item::Section(section) => {
                sections.push(&section.title);
                collect_steps(&section.items, sections, out);
                sections.pop();
            }
            Item::Step(step) => out.push((sections.clone(), step)),
        }
    }
}

/// Builds a report event by event, so a run can render its reports without reading its
/// transcript back.
#[derive(Default)]
pub struct ReportBuilder {
    report: Report,
    sections: HashMap<u64, Path>,
    steps: HashMap<u64, Path>,
    calls: HashMap<u64, (Path, usize)>,
}

impl ReportBuilder {
    pub fn report(&self) -> &Report {
        &self.report
    }

    pub fn add(&mut self, event: &Event) {
        match event {
            Event::RunStart(start) => self.report.start = Some(start.clone()),
            Event::RunEnd(end) => self.report.end = Some(end.clone()),
            Event::SectionStart { id, parent, title } => {
                let node = SectionNode {
                    title: title.clone(),
                    status: None,
                    duration_ms: None,
                    items: Vec::new(),
                };
                let path = self.push(*parent, Item::Section(node));
                self.sections.insert(*id, path);
            }
            Event::SectionEnd {
                id,
                status,
                duration_ms,
                ..
            } => {
                if let Some(Item::Section(section)) = self.item_mut(self.sections.get(id).cloned())
                {
                    section.status = Some(*status);
                    section.duration_ms = Some(*duration_ms);
                }
            }
            Event::StepStart {
                id,
                section,
                kind,
                title,
                ..
            } => {
                let node = StepNode {
                    kind: *kind,
                    title: title.clone(),
                    end: None,
                    calls: Vec::new(),
                    logs: Vec::new(),
                };
                let path = self.push(*section, Item::Step(node));
                self.steps.insert(*id, path);
            }
            Event::StepEnd(end) => {
                if let Some(step) = self.step_mut(Some(end.id)) {
                    step.end = Some(end.clone());
                }
            }
            Event::BindingStart {
                call,
                step,
                name,
                effect,
                target,
                ..
            } => {
                let path = step.and_then(|id| self.steps.get(&id).cloned());
                if let Some(node) = self.step_mut(*step) {
                    node.calls.push(Call {
                        name: name.clone(),
                        effect: *effect,
                        target: target.clone(),
                        outcome: None,
                        duration_ms: None,
                        error: None,
                    });
                    let index = node.calls.len() - 1;
                    if let Some(path) = path {
                        self.calls.insert(*call, (path, index));
                    }
                }
            }
            Event::BindingEnd {
                call,
                outcome,
                duration_ms,
                error,
                ..
            } => {
                let Some((path, index)) = self.calls.get(call).cloned() else {
                    return;
                };
                if let Some(Item::Step(step)) = self.item_mut(Some(path))
                    && let Some(entry) = step.calls.get_mut(index)
                {
                    entry.outcome = Some(*outcome);
                    entry.duration_ms = Some(*duration_ms);
                    entry.error = error.clone();
                }
            }
            Event::Log {
                step,
                level,
                message,
            } => {
                let line = LogLine {
                    level: *level,
                    message: message.clone(),
                };
                match self.step_mut(*step) {
                    Some(node) => node.logs.push(line),
                    None => self.report.logs.push(line),
                }
            }
            Event::Output { .. } | Event::Prompt { .. } => {}
        }
    }

    fn push(&mut self, parent: Option<u64>, item: Item) -> Path {
        let parent_path = parent.and_then(|id| self.sections.get(&id).cloned());
        let items = match self.item_mut(parent_path.clone()) {
            Some(Item::Section(section)) => &mut section.items,
            _ => &mut self.report.items,
        };
        items.push(item);
        let mut path = parent_path.unwrap_or_default();
        path.push(items.len() - 1);
        path
    }

    fn step_mut(&mut self, id: Option<u64>) -> Option<&mut StepNode> {
        let path = id.and_then(|id| self.steps.get(&id).cloned());
        match self.item_mut(path) {
            Some(Item::Step(step)) => Some(step),
            _ => None,
        }
    }

    fn item_mut(&mut self, path: Option<Path>) -> Option<&mut Item> {
        let path = path?;
        let (first, rest) = path.split_first()?;
        let mut item = self.report.items.get_mut(*first)?;
        for index in rest {
            let Item::Section(section) = item else {
                return None;
            };
            item = section.items.get_mut(*index)?;
        }
        Some(item)
    }
}

/// The mark shown beside a step's status in every text rendering.
pub fn status_mark(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Passed) => "✓",
        Some(Status::Failed) => "✗",
        Some(Status::Skipped) => "○",
        Some(Status::Pending) => "…",
        Some(Status::Interrupted) => "!",
        None => "?",
    }
}

fn step_status_label(step: &StepNode) -> String {
    let Some(end) = &step.end else {
        return "not finished".to_owned();
    };
    match (end.status, end.severity) {
        (Status::Failed, Some(severity)) if !severity.fails_run() => {
            format!("failed ({})", severity_name(severity))
        }
        (status, _) => status.as_str().to_owned(),
    }
}

fn severity_name(severity: super::event::Severity) -> &'static str {
    use super::event::Severity::*;
    match severity {
        Info => "info",
        Warning => "warning",
        High => "high",
        Critical => "critical",
    }
}

/// A Markdown report: header facts, a summary, then every section and step.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    markdown_header(report, &mut out);
    markdown_items(&report.items, 2, &mut out);
    if !report.logs.is_empty() {
        out.push_str("\n## Log\n\n");
        for line in &report.logs {
            let _ = writeln!(out, "- {:?}: {}", line.level, inline(&line.message));
        }
    }
    out
}

fn markdown_header(report: &Report, out: &mut String) {
    let title = report
        .start
        .as_ref()
        .map_or("(unknown runbook)", |s| s.runbook.as_str());
    let _ = writeln!(out, "# Runbook report: {title}\n");
    if let Some(start) = &report.start {
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| Run | `{}` |", start.run_id);
        let _ = writeln!(out, "| Environment | {} |", start.environment);
        let _ = writeln!(
            out,
            "| Dry run | {} |",
            if start.dry_run { "yes" } else { "no" }
        );
        let _ = writeln!(out, "| By | {}@{} |", start.user, start.host);
        let _ = writeln!(out, "| Runbook SHA-256 | `{}` |", start.sha256);
        if let Some(commit) = &start.git_commit {
            let _ = writeln!(out, "| Git commit | `{commit}` |");
        }
        let _ = writeln!(out, "| Tool version | {} |", start.tool_version);
    }
    match &report.end {
        Some(end) => {
            let s = &end.summary;
            let _ = writeln!(
                out,
                "\n**Result: {}** in {} ms: {} passed, {} failed, {} warnings, {} skipped, \
                 {} pending.",
                end.status.as_str(),
                end.duration_ms,
                s.passed,
                s.failed,
                s.warnings,
                s.skipped,
                s.pending
            );
            if let Some(error) = &end.error {
                let _ = writeln!(out, "\n```text\n{error}\n```");
            }
        }
        None => out.push_str("\n**Result: incomplete** (the run did not record its end).\n"),
    }
}

fn markdown_items(items: &[Item], depth: usize, out: &mut String) {
    let mut in_list = false;
    for item in items {
        match item {
            Item::Section(section) => {
                let status = section.status.map_or("not finished", Status::as_str);
                let hashes = "#".repeat(depth.min(6));
                let _ = writeln!(out, "\n{hashes} {} ({status})\n", section.title);
                markdown_items(&section.items, depth + 1, out);
                in_list = false;
            }
            Item::Step(step) => {
                if !in_list {
                    out.push('\n');
                    in_list = true;
                }
                markdown_step(step, out);
            }
        }
    }
}

fn markdown_step(step: &StepNode, out: &mut String) {
    let status = step.end.as_ref().map(|end| end.status);
    let duration = step
        .end
        .as_ref()
        .map_or(String::new(), |e| format!(", {} ms", e.duration_ms));
    let _ = writeln!(
        out,
        "- {} **{}** {} ({}{duration})",
        status_mark(status),
        step.kind.as_str(),
        inline(&step.title),
        step_status_label(step)
    );
    let Some(end) = &step.end else { return };
    if let Some(by) = &end.confirmed_by {
        let _ = writeln!(out, "  - confirmed by {by}");
    }
    if let Some(message) = &end.message {
        let at = end
            .location
            .as_ref()
            .map_or(String::new(), |l| format!(" (at {l})"));
        let _ = writeln!(out, "  - {}{at}", inline(message));
    }
    for finding in &end.findings {
        let _ = writeln!(out, "  - finding: {}", inline(&value_text(finding)));
    }
    for call in &step.calls {
        let outcome = call
            .outcome
            .map_or("unfinished".to_owned(), |o| format!("{o:?}"));
        let _ = writeln!(
            out,
            "  - `{}` ({}) on {}: {}",
            call.name,
            call.effect.as_str(),
            inline(&call.target),
            outcome.to_lowercase()
        );
    }
}

fn inline(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

/// A value as one line of text: strings bare, everything else as JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// JUnit XML: one test suite per top-level section, one test case per step or check.
pub fn junit(report: &Report) -> String {
    use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

    let name = report
        .start
        .as_ref()
        .map_or("runbook", |s| s.runbook.as_str());
    let mut junit = quick_junit::Report::new(name);
    let mut suites: Vec<TestSuite> = Vec::new();
    for (sections, step) in report.steps() {
        let suite_name = sections.first().copied().unwrap_or(name);
        if suites.last().is_none_or(|s| s.name.as_str() != suite_name) {
            suites.push(TestSuite::new(suite_name));
        }
        let status = match step.end.as_ref().map(|e| e.status) {
            Some(Status::Passed) => TestCaseStatus::success(),
            Some(Status::Skipped) | Some(Status::Pending) => TestCaseStatus::skipped(),
            _ => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                if let Some(message) = step.end.as_ref().and_then(|e| e.message.clone()) {
                    status.set_message(message);
                }
                status
            }
        };
        let mut case = TestCase::new(step.title.clone(), status);
        case.set_classname(sections.join(" / "));
        if let Some(end) = &step.end {
            case.set_time(std::time::Duration::from_millis(end.duration_ms));
        }
        if let Some(suite) = suites.last_mut() {
            suite.add_test_case(case);
        }
    }
    junit.add_test_suites(suites);
    junit.to_string().unwrap_or_default()
}

/// The report tree as JSON, for other tools.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// A self-contained HTML page (inline styles, no scripts) for sharing a run.
pub fn html(report: &Report) -> String {
    let title = report
        .start
        .as_ref()
        .map_or("runbook report", |s| s.runbook.as_str());
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse}}td,th{{padding:.2rem .8rem;text-align:left;border-bottom:1px solid #ddd}}\
         .passed{{color:#16794c}}.failed{{color:#b3261e}}.skipped,.pending{{color:#8a6d00}}\
         ul{{list-style:none;padding-left:1rem}}code{{background:#f3f3f3;padding:0 .2rem}}</style></head><body>",
        escape(title)
    );
    let _ = write!(out, "<h1>{}</h1>", escape(title));
    html_header(report, &mut out);
    html_items(&report.items, 2, &mut out);
    out.push_str("</body></html>\n");
    out
}

fn html_header(report: &Report, out: &mut String) {
    if let Some(start) = &report.start {
        out.push_str("<table>");
        for (label, value) in [
            ("Run", start.run_id.as_str()),
            ("Environment", start.environment.as_str()),
            ("Dry run", if start.dry_run { "yes" } else { "no" }),
            ("User", start.user.as_str()),
            ("Host", start.host.as_str()),
            ("Runbook SHA-256", start.sha256.as_str()),
            ("Git commit", start.git_commit.as_deref().unwrap_or("-")),
        ] {
            let _ = write!(out, "<tr><th>{label}</th><td>{}</td></tr>", escape(value));
        }
        out.push_str("</table>");
    }
    match &report.end {
        Some(end) => {
            let s = &end.summary;
            let _ = write!(
                out,
                "<p class=\"{0}\"><strong>Result: {0}</strong> in {1} ms: {2} passed, {3} failed, \
                 {4} warnings, {5} skipped, {6} pending.</p>",
                end.status.as_str(),
                end.duration_ms,
                s.passed,
                s.failed,
                s.warnings,
                s.skipped,
                s.pending
            );
        }
        None => out.push_str("<p class=\"failed\"><strong>Result: incomplete</strong></p>"),
    }
}

fn html_items(items: &[Item], depth: usize, out: &mut String) {
    out.push_str("<ul>");
    for item in items {
        match item {
            Item::Section(section) => {
                let status = section.status.map_or("pending", Status::as_str);
                let level = depth.min(6);
                let _ = write!(
                    out,
                    "<li><h{level} class=\"{status}\">{}</h{level}>",
                    escape(&section.title)
                );
                html_items(&section.items, depth + 1, out);
                out.push_str("</li>");
            }
            Item::Step(step) => html_step(step, out),
        }
    }
    out.push_str("</ul>");
}

fn html_step(step: &StepNode, out: &mut String) {
    let status = step.end.as_ref().map(|e| e.status);
    let class = status.map_or("pending", Status::as_str);
    let _ = write!(
        out,
        "<li class=\"{class}\">{} <strong>{}</strong> {} ({})",
        status_mark(status),
        step.kind.as_str(),
        escape(&step.title),
        escape(&step_status_label(step))
    );
    if let Some(end) = &step.end {
        if let Some(message) = &end.message {
            let _ = write!(out, "<br><code>{}</code>", escape(message));
        }
        for finding in &end.findings {
            let _ = write!(out, "<br>finding: {}", escape(&value_text(finding)));
        }
    }
    out.push_str("</li>");
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
