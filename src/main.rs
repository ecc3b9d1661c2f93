//! The `secintake` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    secintake::cli::main()
}
