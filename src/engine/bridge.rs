//! The bridge from synchronous Rhai to asynchronous bindings: every binding's future runs
//! here, raced against Ctrl-C and the current step's deadline.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Why a bridged call did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The operator pressed Ctrl-C.
    Cancelled,
    /// The current step's timeout ran out.
    TimedOut { after: Duration },
}

/// Where the calling thread is in the run: the step it works for and that step's deadline.
/// Threads started by `parallel` inherit their parent's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Frame {
    pub section: Option<u64>,
    pub step: Option<u64>,
    pub deadline: Option<(Instant, Duration)>,
}

thread_local! {
    static FRAME: Cell<Frame> = const { Cell::new(Frame { section: None, step: None, deadline: None }) };
}

/// The calling thread's frame.
pub fn frame() -> Frame {
    FRAME.with(Cell::get)
}

/// Replaces the calling thread's frame, returning the previous one.
pub fn set_frame(frame: Frame) -> Frame {
    FRAME.with(|cell| cell.replace(frame))
}

/// True when the current step's deadline has passed.
pub fn deadline_passed() -> Option<Duration> {
    match frame().deadline {
        Some((at, after)) if Instant::now() >= at => Some(after),
        _ => None,
    }
}

/// Drives `future` to completion on the shared runtime from a non-runtime thread, returning
/// early when `cancel` fires or the current step's deadline passes.
pub fn block_on<F: Future>(
    handle: &Handle,
    cancel: &CancellationToken,
    future: F,
) -> Result<F::Output, Interrupt> {
    let deadline = frame().deadline;
    handle.block_on(async move {
        let sleep = async {
            match deadline {
                Some((at, after)) => {
                    tokio::time::sleep_until(at.into()).await;
                    after
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Interrupt::Cancelled),
            after = sleep => Err(Interrupt::TimedOut { after }),
            output = future => Ok(output),
        }
    })
}

/// Sleeps for `duration`, waking early for Ctrl-C or the step's deadline.
pub fn sleep(
    handle: &Handle,
    cancel: &CancellationToken,
    duration: Duration,
) -> Result<(), Interrupt> {
    // The timer must be created inside the runtime, hence the async block.
    block_on(
        handle,
        cancel,
        async move { tokio::time::sleep(duration).await },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_deadline_ends_a_call_that_never_finishes() {
        let rt = runtime();
        let after = Duration::from_millis(50);
        let previous = set_frame(Frame {
            deadline: Some((Instant::now() + after, after)),
            ..Frame::default()
        });
        let result = block_on(
            rt.handle(),
            &CancellationToken::new(),
            std::future::pending::<()>(),
        );
        set_frame(previous);
        assert_eq!(result, Err(Interrupt::TimedOut { after }));
    }

    #[test]
    fn cancellation_ends_a_call_that_never_finishes() {
        let rt = runtime();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        rt.spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.cancel();
        });
        let result = block_on(rt.handle(), &cancel, std::future::pending::<()>());
        assert_eq!(result, Err(Interrupt::Cancelled));
    }

    #[test]
    fn a_finished_future_returns_its_output() {
        let rt = runtime();
        let result = block_on(rt.handle(), &CancellationToken::new(), async { 42 });
        assert_eq!(result, Ok(42));
    }
}
