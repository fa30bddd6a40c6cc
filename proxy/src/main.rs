//! `sipedge-proxy`: parses arguments and config, then calls the library.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("sipedge-proxy: not assembled yet");
    std::process::exit(2);
}
