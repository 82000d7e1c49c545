//! The errors the engine uses for control flow. `Stop`s end the run and cannot be caught by a
//! script's `try`/`catch`; `Flow`s end one step and can be.

use std::time::Duration;

use rhai::{Dynamic, EvalAltResult, Position};

/// Why the run must stop now.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// Ctrl-C.
    Interrupted,
    /// The current step's timeout passed; the step turns this into its own failure.
    StepTimeout(Duration),
    /// A step failed and was not marked to continue.
    StepFailed { title: String },
    /// A confirmation was declined, or could not be asked for.
    Declined(String),
    /// The transcript could not be written.
    Transcript(String),
    /// Required parameters were missing when the first step began.
    MissingParams(Vec<String>),
}

/// How a step body ended early on purpose.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    Skip(String),
    Fail(String),
}

pub fn stop(reason: Stop) -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(Dynamic::from(reason), Position::NONE).into()
}

pub fn interrupted() -> Box<EvalAltResult> {
    stop(Stop::Interrupted)
}

pub fn step_timeout(after: Duration) -> Box<EvalAltResult> {
    stop(Stop::StepTimeout(after))
}

pub fn declined(environment: &str, what: &str) -> Box<EvalAltResult> {
    stop(Stop::Declined(format!(
        "{what} needs confirmation for the protected environment `{environment}`: \
         answer at the terminal, or pass --confirm {environment}"
    )))
}

pub fn transcript_failed(error: &dyn std::fmt::Display) -> Box<EvalAltResult> {
    stop(Stop::Transcript(error.to_string()))
}

pub fn flow(flow: Flow) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(flow), Position::NONE).into()
}

/// The innermost error, below the wrappers Rhai adds for function calls and modules.
pub fn root(error: &EvalAltResult) -> &EvalAltResult {
    match error {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => root(inner),
        other => other,
    }
}

/// The `Stop` an error carries, if it is one.
pub fn as_stop(error: &EvalAltResult) -> Option<Stop> {
    match root(error) {
        EvalAltResult::ErrorTerminated(token, _) => token.clone().try_cast::<Stop>(),
        _ => None,
    }
}

/// The `Flow` an error carries, if it is one.
pub fn as_flow(error: &EvalAltResult) -> Option<Flow> {
    match root(error) {
        EvalAltResult::ErrorRuntime(value, _) => value.clone().try_cast::<Flow>(),
        _ => None,
    }
}
