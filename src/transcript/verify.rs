//! Reading a transcript back and checking its hash chain.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::event::{Event, Record, RunStatus};
use super::writer::GENESIS;

/// What `verify` found.
#[derive(Debug)]
pub struct Verification {
    pub records: Vec<Record>,
    pub problem: Option<Problem>,
}

/// The first thing wrong with a transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    Empty,
    /// A line is not valid JSON or not a known event.
    Unreadable {
        line: usize,
        reason: String,
    },
    SequenceGap {
        line: usize,
        expected: u64,
        found: u64,
    },
    /// The line's `prev` does not match the line before it: something was changed or removed.
    BrokenChain {
        line: usize,
        seq: u64,
    },
    NoRunStart,
    /// The last line has no newline: the writer died in the middle of it.
    CutOff {
        line: usize,
    },
    /// The chain is intact but the run never recorded its end (crash or kill).
    Incomplete {
        last_seq: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => write!(f, "the transcript is empty"),
            Problem::Unreadable { line, reason } => {
                write!(f, "line {line} is unreadable: {reason}")
            }
            Problem::SequenceGap {
                line,
                expected,
                found,
            } => write!(
                f,
                "line {line}: sequence number {found} where {expected} was expected \
                 (lines were removed or reordered)"
            ),
            Problem::BrokenChain { line, seq } => write!(
                f,
                "line {line} (seq {seq}): its hash of the previous line does not match; \
                 line {} was changed after it was written",
                line - 1
            ),
            Problem::NoRunStart => write!(f, "line 1 is not a run_start event"),
            Problem::CutOff { line } => write!(
                f,
                "line {line} is cut off (the run was killed while writing it); \
                 the lines before it are intact"
            ),
            Problem::Incomplete { last_seq } => write!(
                f,
                "the run never recorded its end: the transcript stops after seq {last_seq} \
                 (the process crashed or was killed)"
            ),
        }
    }
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }

    /// The run's final status, when the transcript records one.
    pub fn run_status(&self) -> Option<RunStatus> {
        self.records
            .iter()
            .rev()
            .find_map(|record| match &record.event {
                Event::RunEnd(end) => Some(end.status),
                _ => None,
            })
    }
}

/// Reads and checks a transcript file.
pub fn verify_file(path: &Path) -> std::io::Result<Verification> {
    Ok(verify_bytes(&std::fs::read(path)?))
}

/// Checks a transcript's bytes: every complete line is parsed, numbered from 0 and chained to
/// the one before. Reading stops at the first problem; the records before it are returned.
pub fn verify_bytes(bytes: &[u8]) -> Verification {
    let mut records = Vec::new();
    if bytes.is_empty() {
        return Verification {
            records,
            problem: Some(Problem::Empty),
        };
    }
    let mut prev = GENESIS.to_owned();
    let mut rest = bytes;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Verification {
                records,
                problem: Some(Problem::CutOff { line: line_no }),
            };
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if let Err(problem) = check_line(line, line_no, &prev, &mut records) {
            return Verification {
                records,
                problem: Some(problem),
            };
        }
        prev = hex::encode(Sha256::digest(line));
    }
    let problem = completeness(&records);
    Verification { records, problem }
}

fn check_line(
    line: &[u8],
    line_no: usize,
    prev: &str,
    records: &mut Vec<Record>,
) -> Result<(), Problem> {
    let record: Record = serde_json::from_slice(line).map_err(|err| Problem::Unreadable {
        line: line_no,
        reason: err.to_string(),
    })?;
    let expected = records.len() as u64;
    if record.seq != expected {
        return Err(Problem::SequenceGap {
            line: line_no,
            expected,
            found: record.seq,
        });
    }
    if record.prev != prev {
        return Err(Problem::BrokenChain {
            line: line_no,
            seq: record.seq,
        });
    }
    if record.seq == 0 && !matches!(record.event, Event::RunStart(_)) {
        return Err(Problem::NoRunStart);
    }
    records.push(record);
    Ok(())
}

fn completeness(records: &[Record]) -> Option<Problem> {
    match records.last() {
        None => Some(Problem::Empty),
        Some(last) if !matches!(last.event, Event::RunEnd(_)) => {
            Some(Problem::Incomplete { last_seq: last.seq })
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::event::{LogLevel, RunEnd, RunStart, Summary};
    use crate::transcript::mask::Masker;
    use crate::transcript::writer::TranscriptWriter;

    fn start() -> Event {
        Event::RunStart(RunStart {
            run_id: "r1".into(),
            runbook: "x.rhai".into(),
            sha256: "00".into(),
            git_commit: None,
            tool_version: "0".into(),
            user: "u".into(),
            host: "h".into(),
            environment: "default".into(),
            params: Default::default(),
            dry_run: false,
            resumed_from: None,
        })
    }

    fn log(message: &str) -> Event {
        Event::Log {
            step: None,
            level: LogLevel::Info,
            message: message.into(),
        }
    }

    fn end() -> Event {
        Event::RunEnd(RunEnd {
            status: RunStatus::Passed,
            exit_code: 0,
            duration_ms: 1,
            summary: Summary::default(),
            error: None,
        })
    }

    fn written(events: Vec<Event>) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let mut writer = TranscriptWriter::create(&path, Masker::new()).unwrap();
        for event in events {
            writer
                .append("2026-01-01T00:00:00.000Z".into(), event, false)
                .unwrap();
        }
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn a_complete_transcript_verifies() {
        let bytes = written(vec![start(), log("a"), end()]);
        let verification = verify_bytes(&bytes);
        assert_eq!(verification.problem, None);
        assert_eq!(verification.records.len(), 3);
        assert_eq!(verification.run_status(), Some(RunStatus::Passed));
    }

    #[test]
    fn an_edited_line_breaks_the_chain_at_the_next_line() {
        let bytes = written(vec![start(), log("deployed v1"), log("b"), end()]);
        let edited = String::from_utf8(bytes)
            .unwrap()
            .replace("deployed v1", "deployed v2");
        let verification = verify_bytes(edited.as_bytes());
        assert_eq!(
            verification.problem,
            Some(Problem::BrokenChain { line: 3, seq: 2 })
        );
        assert_eq!(verification.records.len(), 2);
    }

    #[test]
    fn a_removed_line_is_a_sequence_gap() {
        let bytes = written(vec![start(), log("a"), log("b"), end()]);
        let text = String::from_utf8(bytes).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|l| l.1)
            .collect();
        let verification = verify_bytes(format!("{}\n", kept.join("\n")).as_bytes());
        assert_eq!(
            verification.problem,
            Some(Problem::SequenceGap {
                line: 2,
                expected: 1,
                found: 2
            })
        );
    }

    #[test]
    fn a_crash_mid_line_is_reported_as_cut_off_after_the_intact_lines() {
        let bytes = written(vec![start(), log("a"), end()]);
        let cut = &bytes[..bytes.len() - 10];
        let verification = verify_bytes(cut);
        assert_eq!(verification.problem, Some(Problem::CutOff { line: 3 }));
        assert_eq!(verification.records.len(), 2);
    }

    #[test]
    fn a_run_without_its_end_is_incomplete() {
        let bytes = written(vec![start(), log("a")]);
        let verification = verify_bytes(&bytes);
        assert_eq!(
            verification.problem,
            Some(Problem::Incomplete { last_seq: 1 })
        );
    }
}
