//! The engine's own logs (`tracing`), to stderr, passed through the run's masker.

use std::io::Write;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::transcript::Masker;

static MASKER: OnceLock<Masker> = OnceLock::new();

/// The process-wide masker: every run registers its secrets here, so engine logs are masked
/// with the same set as the transcript.
pub fn masker() -> Masker {
    MASKER.get_or_init(Masker::new).clone()
}

/// Logs at `level` unless `RUST_LOG` says otherwise.
pub fn init(level: tracing::Level) {
    // kube's client logs every failed request as an error of its own; the binding's error
    // already says it, naming the context and API server, so that line would only repeat it.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "runbook={level},warn,kube_client::client::builder=off"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MaskedStderr)
        .with_ansi(false)
        .try_init();
}

struct MaskedStderr;

/// Buffers one log line, masks it, and writes it to stderr when dropped.
pub struct MaskedLine(Vec<u8>);

impl Write for MaskedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr()
            .lock()
            .write_all(masker().mask(&text).as_bytes());
    }
}

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedLine;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedLine(Vec::new())
    }
}
