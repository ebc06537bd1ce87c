//! `skiff`: the command line for a Skiff hub. Parses the arguments, runs the command
//! and turns a failure into one line on stderr and an exit code.
#![forbid(unsafe_code)]

use skiff_hub::cli::{Cli, Io, run};

fn main() {
    let cli = Cli::from_args();
    let env = |name: &str| std::env::var(name).ok();
    let result = run(
        cli,
        Io {
            // Not locked for the whole run: `skiff exec -i` reads it from its own thread.
            stdin: &mut std::io::stdin(),
            stdout: &mut std::io::stdout().lock(),
            stderr: &mut std::io::stderr().lock(),
            env: &env,
        },
    );
    if let Err(e) = result {
        if let Some(line) = e.render() {
            eprintln!("{line}");
        }
        std::process::exit(e.exit_code());
    }
}
