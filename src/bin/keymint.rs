//! The seller's admin CLI.

fn main() -> std::process::ExitCode {
    keymint::cli::main()
}
