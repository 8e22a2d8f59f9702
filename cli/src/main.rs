//! `kubectl-transition`: thin entry point; the commands live in the library.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let config = kubectl_transition::Config::parse();
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = kubectl_transition::run(config, &mut stdout).await {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
