//! `atbus-bridge`: see `atbus-bridge --help` and docs/bridge.md.

fn main() {
    std::process::exit(atbus_bridge::cli::run(std::env::args()));
}
