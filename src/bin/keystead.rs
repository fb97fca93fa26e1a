//! The seller's admin CLI.

fn main() -> std::process::ExitCode {
    keystead::cli::main()
}
