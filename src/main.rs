//! The `runbook` binary: parse the command line, hand over, exit with the outcome's code.

use clap::Parser;
use runbook::cli::{self, Cli};
use tokio_util::sync::CancellationToken;

fn main() {
    let cli = Cli::parse();
    runbook::logging::init(cli.log_level());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            std::process::exit(2);
        }
    };
    let cancel = CancellationToken::new();
    runtime.spawn(watch_ctrl_c(cancel.clone()));
    let code = cli::execute(cli, &runtime, cancel);
    runtime.shutdown_background();
    std::process::exit(code);
}

/// The first Ctrl-C asks the run to stop (it records that and ends within a second); a second
/// one ends the process at once, leaving a transcript that `verify` reports as incomplete.
async fn watch_ctrl_c(cancel: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("\ninterrupting: stopping the current step (Ctrl-C again to quit at once)");
    cancel.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}
